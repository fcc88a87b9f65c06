#include "bench/sim/report.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "spillway/limit.h"

namespace spillway::sim {
namespace {

// Fixed precision; "nan" and "inf" spelled the same on every platform.
std::string Number(double x, int precision) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return absl::StrFormat("%.*f", precision, x);
}

std::string Converge(double s) {
  if (std::isinf(s)) return "never";
  return Number(s, 0);
}

// A tick step of 1, 2 or 5 times a power of ten giving about `ticks` ticks
// up to `max`.
double NiceStep(double max, int ticks) {
  const double raw = max / ticks;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * magnitude >= raw) return m * magnitude;
  }
  return 10.0 * magnitude;
}

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                    "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                    "#bcbd22", "#17becf"};

// One panel of the plot: maps data to pixels and draws axes.
struct Panel {
  double left, top, width, height;
  double x_max, y_max;

  double X(double x) const { return left + width * x / x_max; }
  double Y(double y) const {
    return top + height * (1.0 - std::min(y, y_max) / y_max);
  }

  void Axes(std::string& svg, const std::string& title,
            const std::string& y_label) const {
    absl::StrAppendFormat(
        &svg,
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
        "fill=\"none\" stroke=\"#444\"/>\n",
        left, top, width, height);
    absl::StrAppendFormat(&svg,
                          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" "
                          "font-weight=\"bold\">%s</text>\n",
                          left, top - 8, title);
    const double y_step = NiceStep(y_max, 5);
    for (double y = 0; y <= y_max + 1e-9; y += y_step) {
      absl::StrAppendFormat(
          &svg,
          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
          "stroke=\"#ddd\"/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" "
          "text-anchor=\"end\">%s</text>\n",
          left, Y(y), left + width, Y(y), left - 6, Y(y) + 4, Number(y, 0));
    }
    const double x_step = NiceStep(x_max, 10);
    for (double x = 0; x <= x_max + 1e-9; x += x_step) {
      absl::StrAppendFormat(
          &svg,
          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
          "stroke=\"#444\"/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" "
          "text-anchor=\"middle\">%s</text>\n",
          X(x), top + height, X(x), top + height + 5, X(x), top + height + 18,
          Number(x, x_step < 1 ? 1 : 0));
    }
    absl::StrAppendFormat(&svg,
                          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" "
                          "text-anchor=\"middle\">time (s)</text>\n",
                          left + width / 2, top + height + 34);
    absl::StrAppendFormat(
        &svg,
        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
        "transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n",
        left - 48, top + height / 2, left - 48, top + height / 2, y_label);
  }

  void Shade(std::string& svg, double from, double to) const {
    absl::StrAppendFormat(
        &svg,
        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
        "fill=\"#f4cccc\" fill-opacity=\"0.5\"/>\n",
        X(from), top, X(to) - X(from), height);
  }

  void Line(std::string& svg, const std::vector<std::pair<double, double>>& xy,
            const char* color, const char* dash = nullptr) const {
    std::vector<std::string> points;
    points.reserve(xy.size());
    for (const auto& [x, y] : xy) {
      points.push_back(absl::StrFormat("%.1f,%.1f", X(x), Y(y)));
    }
    absl::StrAppendFormat(
        &svg,
        "<polyline fill=\"none\" stroke=\"%s\" "
        "stroke-width=\"1.5\"%s points=\"%s\"/>\n",
        color,
        dash == nullptr ? "" : absl::StrCat(" stroke-dasharray=\"", dash, "\""),
        absl::StrJoin(points, " "));
  }
};

bool Unlimited(const RunResult& run) {
  for (const SeriesPoint& p : run.series) {
    if (p.limit_sum >= kMaxConcurrencyLimit) return true;
  }
  return false;
}

}  // namespace

std::string MarkdownTable(const std::vector<ScenarioMetrics>& rows) {
  std::string out =
      "| scenario | contender | goodput % of peak | p50 ms | p99 ms | "
      "rejected % | timeouts | converge s |\n"
      "|---|---|---:|---:|---:|---:|---:|---:|\n";
  for (const ScenarioMetrics& m : rows) {
    absl::StrAppend(&out, "| ", m.scenario, " | ", m.contender, " | ",
                    Number(m.goodput_pct, 1), " | ", Number(m.p50_ms, 1), " | ",
                    Number(m.p99_ms, 1), " | ", Number(m.rejected_pct, 1),
                    " | ", m.timeouts, " | ", Converge(m.converge_s), " |\n");
  }
  return out;
}

std::string DetailsTable(const std::vector<ScenarioMetrics>& rows) {
  std::string out =
      "| scenario | contender | offered % of peak | attempts | given up | "
      "mean limit sum | mean in database | rejected % per instance |\n"
      "|---|---|---:|---:|---:|---:|---:|---|\n";
  for (const ScenarioMetrics& m : rows) {
    std::vector<std::string> per_instance;
    for (double r : m.instance_rejected_pct) {
      per_instance.push_back(Number(r, 0));
    }
    const std::string limit_sum = m.mean_limit_sum >= kMaxConcurrencyLimit
                                      ? "unlimited"
                                      : Number(m.mean_limit_sum, 1);
    absl::StrAppend(
        &out, "| ", m.scenario, " | ", m.contender, " | ",
        Number(m.offered_pct, 1), " | ", m.attempts, " | ", m.gave_up, " | ",
        limit_sum, " | ", Number(m.mean_in_service, 1), " | ",
        per_instance.empty() ? "-" : absl::StrJoin(per_instance, " "), " |\n");
  }
  return out;
}

std::string Csv(const std::vector<ScenarioMetrics>& rows) {
  std::string out = absl::StrCat(kCsvHeader, "\n");
  for (const ScenarioMetrics& m : rows) {
    absl::StrAppend(&out, m.scenario, ",", m.contender, ",",
                    Number(m.goodput_pct, 2), ",", Number(m.p50_ms, 2), ",",
                    Number(m.p99_ms, 2), ",", Number(m.rejected_pct, 2), ",",
                    m.timeouts, ",", Number(m.converge_s, 1), "\n");
  }
  return out;
}

std::string IncidentSvg(const std::vector<RunResult>& runs,
                        SimTime incident_from, SimTime incident_to) {
  constexpr double kWidth = 1000, kHeight = 720;
  constexpr double kLeft = 80, kRight = 230, kTop = 40, kGap = 90;
  const double panel_height = (kHeight - kTop - kGap - 50) / 2;
  const double duration = runs.empty() ? 1.0 : runs[0].duration.count();
  const double peak = runs.empty() ? 1.0 : runs[0].peak;
  const double n_star = runs.empty() ? 0.0 : runs[0].peak_concurrency;

  double goodput_max = 110.0;
  double limit_max = 2.0 * n_star;
  for (const RunResult& run : runs) {
    for (double g : GoodputPerSecond(run)) {
      goodput_max = std::max(goodput_max, 100.0 * g / peak);
    }
    if (Unlimited(run)) continue;
    for (const SeriesPoint& p : run.series) {
      limit_max = std::max(limit_max, static_cast<double>(p.limit_sum));
    }
  }
  limit_max *= 1.05;

  const Panel top{kLeft,        kTop,     kWidth - kLeft - kRight,
                  panel_height, duration, goodput_max};
  const Panel bottom{kLeft,
                     kTop + panel_height + kGap,
                     kWidth - kLeft - kRight,
                     panel_height,
                     duration,
                     limit_max};

  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
      "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
      "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n",
      kWidth, kHeight, kWidth, kHeight);
  for (const Panel* p : {&top, &bottom}) {
    p->Shade(svg, incident_from.count(), incident_to.count());
  }
  top.Axes(svg, "Incident: goodput per second", "goodput (% of peak)");
  bottom.Axes(svg, "Incident: sum of the instances' limits",
              "concurrency limit (writes)");
  // Reference lines: the peak, and N*.
  top.Line(svg, {{0, 100}, {duration, 100}}, "#888", "4 4");
  bottom.Line(svg, {{0, n_star}, {duration, n_star}}, "#888", "4 4");
  absl::StrAppendFormat(&svg,
                        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" "
                        "fill=\"#666\">N* = %.1f</text>\n",
                        bottom.left + bottom.width - 60, bottom.Y(n_star) + 14,
                        n_star);

  for (size_t i = 0; i < runs.size(); ++i) {
    const RunResult& run = runs[i];
    const char* color = kPalette[i % (sizeof(kPalette) / sizeof(kPalette[0]))];
    const std::vector<double> g = GoodputPerSecond(run);
    std::vector<std::pair<double, double>> goodput;
    for (size_t b = 0; b < g.size(); ++b) {
      goodput.push_back({(b + 0.5) * kBinWidth.count(), 100.0 * g[b] / peak});
    }
    top.Line(svg, goodput, color);
    const bool unlimited = Unlimited(run);
    if (!unlimited) {
      std::vector<std::pair<double, double>> limits;
      for (const SeriesPoint& p : run.series) {
        limits.push_back({p.at.count(), static_cast<double>(p.limit_sum)});
      }
      bottom.Line(svg, limits, color);
    }
    const double y = kTop + 10 + 22 * i;
    const double x = kWidth - kRight + 20;
    absl::StrAppendFormat(
        &svg,
        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
        "stroke-width=\"3\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
        "font-size=\"12\">%s%s</text>\n",
        x, y, x + 24, y, color, x + 30, y + 4, run.contender,
        unlimited ? " (no limit)" : "");
  }
  const double y = kTop + 10 + 22 * runs.size() + 10;
  absl::StrAppendFormat(
      &svg,
      "<rect x=\"%.1f\" y=\"%.1f\" width=\"24\" height=\"10\" "
      "fill=\"#f4cccc\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
      "font-size=\"12\">incident</text>\n",
      kWidth - kRight + 20, y - 5, kWidth - kRight + 50, y + 4);
  absl::StrAppend(&svg, "</svg>\n");
  return svg;
}

}  // namespace spillway::sim
