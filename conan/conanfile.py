# Conan 2 recipe for spillway.
#
#   conan create conan/ --build=missing
#
# The recipe lives in conan/, the sources one level up: export_sources()
# copies them from the repository root and layout() sets folders.root = ".."
# so that a local `conan install conan/` / `conan build conan/` also finds
# the top-level CMakeLists.txt (the pattern of Conan's "conanfile in a
# subfolder" example). NOT yet run with a real Conan client: see README.md.
import os
import re

from conan import ConanFile
from conan.errors import ConanException, ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.env import Environment
from conan.tools.files import copy, load, rmdir
from conan.tools.gnu import PkgConfigDeps

required_conan_version = ">=2.0"


class SpillwayConan(ConanFile):
    name = "spillway"
    # No LICENSE file in the repository yet. TODO: set the real SPDX
    # identifier (and copy the LICENSE file in package()) once one is chosen.
    license = "proprietary"
    description = ("Write-overload protection for databases: adaptive "
                   "concurrency limit, token bucket and fleet-wide budget.")
    topics = ("overload", "throttling", "concurrency-limit", "database")
    package_type = "library"
    settings = "os", "arch", "compiler", "build_type"
    options = {
        "shared": [True, False],
        "fPIC": [True, False],
        "with_redis": [True, False],
        "with_pqxx": [True, False],
        "with_prometheus": [True, False],
    }
    default_options = {
        "shared": False,
        "fPIC": True,
        "with_redis": True,
        "with_pqxx": True,
        "with_prometheus": True,
    }

    @property
    def _source_root(self):
        # The repository root: the recipe is in <root>/conan/.
        return os.path.join(self.recipe_folder, "..")

    def set_version(self):
        # The one source of the version is `project(spillway VERSION x.y.z)`
        # in the top-level CMakeLists.txt; no fallback on purpose.
        cmakelists = load(self, os.path.join(self._source_root, "CMakeLists.txt"))
        match = re.search(r"project\s*\(\s*spillway\s+VERSION\s+([0-9]+(?:\.[0-9]+)*)",
                          cmakelists, re.IGNORECASE)
        if not match:
            raise ConanException(
                "spillway: no `project(spillway VERSION ...)` in CMakeLists.txt")
        self.version = match.group(1)

    def export_sources(self):
        # What the build reads with tests, benchmarks and examples off: the
        # top-level CMakeLists.txt adds lib/ unconditionally; bench/sim and
        # bench/pg_overload only with SPILLWAY_BUILD_TESTS or _BENCHMARKS, and
        # tests/, bench/, examples/ only with their own options, all OFF here.
        # cmake/ holds spillwayConfig.cmake.in (install rules); include/ the
        # installed headers.
        root = self._source_root
        copy(self, "CMakeLists.txt", root, self.export_sources_folder)
        copy(self, "cmake/*", root, self.export_sources_folder)
        copy(self, "include/*", root, self.export_sources_folder)
        copy(self, "lib/*", root, self.export_sources_folder)

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC

    def configure(self):
        if self.options.shared:
            self.options.rm_safe("fPIC")

    def layout(self):
        cmake_layout(self)
        # Local flow only (conan install/build conan/): the project root is
        # the parent folder. Conan ignores folders.root in its cache, where
        # export_sources() already put CMakeLists.txt at the source root.
        self.folders.root = ".."

    def requirements(self):
        # ConanCenter references; these versions exist there but this
        # combination is UNTESTED (our CI builds against Debian 12's
        # Abseil 20220623, libpqxx 6.4, hiredis 0.14, prometheus-cpp 1.0).
        #
        # transitive_headers/transitive_libs: our public headers include
        # Abseil (absl::Status in every API), libpqxx (pqxx::work in
        # spillway/pqxx/throttled_writer.h) and, for the prometheus component,
        # prometheus-cpp, so consumers need their headers and libraries.
        # hiredis is only used inside lib/redis/ (PRIVATE in CMake): default
        # traits, so it is linked but its headers are not propagated.
        self.requires("abseil/20230802.1", transitive_headers=True, transitive_libs=True)
        if self.options.with_redis:
            self.requires("hiredis/1.2.0")
        if self.options.with_pqxx:
            self.requires("libpqxx/7.9.0", transitive_headers=True, transitive_libs=True)
        if self.options.with_prometheus:
            self.requires("prometheus-cpp/1.1.0", transitive_headers=True,
                          transitive_libs=True)

    def build_requirements(self):
        # Our CMake finds hiredis and libpqxx with pkg_check_modules, so the
        # build needs a pkg-config executable. ConanCenter's pkgconf exports
        # PKG_CONFIG into the build environment, which FindPkgConfig honours;
        # this avoids depending on one being installed on the build machine.
        if self.options.with_redis or self.options.with_pqxx:
            self.tool_requires("pkgconf/[>=2.1 <3]")

    def validate(self):
        check_min_cppstd(self, 17)
        if self.settings.os == "Windows" and self.options.shared:
            # The libraries export no symbols (no dllexport / export header).
            raise ConanInvalidConfiguration(
                f"{self.ref}: shared libraries are not supported on Windows")

    def generate(self):
        tc = CMakeToolchain(self)
        # cache_variables (not variables): they reach CMake as -D cache
        # entries through CMakePresets, which is what option() reads.
        # BUILD_SHARED_LIBS and CMAKE_POSITION_INDEPENDENT_CODE come from the
        # shared/fPIC options through CMakeToolchain itself.
        tc.cache_variables["SPILLWAY_BUILD_TESTS"] = False
        tc.cache_variables["SPILLWAY_BUILD_BENCHMARKS"] = False
        tc.cache_variables["SPILLWAY_BUILD_EXAMPLES"] = False
        tc.cache_variables["SPILLWAY_INSTALL"] = True
        # -Werror is on by default for a top-level build, which a package
        # build is; newer compilers or dependency versions (deprecations in
        # libpqxx 7.x) must not fail a consumer's build.
        tc.cache_variables["SPILLWAY_WERROR"] = False
        tc.cache_variables["SPILLWAY_WITH_REDIS"] = bool(self.options.with_redis)
        tc.cache_variables["SPILLWAY_WITH_PQXX"] = bool(self.options.with_pqxx)
        tc.cache_variables["SPILLWAY_WITH_PROMETHEUS"] = bool(self.options.with_prometheus)
        tc.generate()

        # find_package(absl CONFIG) and find_package(prometheus-cpp CONFIG).
        CMakeDeps(self).generate()

        # pkg_check_modules(... hiredis) and (... libpqxx): PkgConfigDeps
        # writes hiredis.pc, libpqxx.pc (and libpq.pc, ...) into the
        # generators folder. CMakeToolchain (Conan >= 2.0, conan-io/conan
        # PR #12513) already prepends that folder to ENV{PKG_CONFIG_PATH}
        # inside conan_toolchain.cmake; the environment script below does the
        # same for the whole build environment (conanbuild.sh, which
        # CMake.configure() runs under), so pkg-config finds the files even
        # if that toolchain block changes. Prepending twice is harmless.
        PkgConfigDeps(self).generate()
        env = Environment()
        env.prepend_path("PKG_CONFIG_PATH", self.generators_folder)
        env.vars(self).save_script("conanbuild_pkgconfig")

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    @property
    def _components(self):
        comps = ["core", "testing"]
        if self.options.with_redis:
            comps.append("redis")
        if self.options.with_pqxx:
            comps.append("pqxx")
        if self.options.with_prometheus:
            comps.append("prometheus")
        return comps

    def package(self):
        cmake = CMake(self)
        cmake.install()
        # Consumers get spillway-config.cmake from CMakeDeps (driven by
        # package_info below); our own installed spillwayConfig.cmake would
        # look for hiredis/libpqxx with pkg-config outside Conan's graph.
        rmdir(self, os.path.join(self.package_folder, "lib", "cmake"))
        # Likewise our spillway-<component>.pc files name Debian's .pc files
        # (absl_status, hiredis, ...); PkgConfigDeps writes Conan's own.
        rmdir(self, os.path.join(self.package_folder, "lib", "pkgconfig"))
        # Fail here, not at a consumer's link step, if an enabled component's
        # library was not built (e.g. a component option the CMake build
        # ignored).
        libdir = os.path.join(self.package_folder, "lib")
        present = os.listdir(libdir) if os.path.isdir(libdir) else []
        for comp in self._components:
            lib = f"spillway_{comp}"
            if not any(f.startswith(lib) or f.startswith("lib" + lib) for f in present):
                raise ConanException(
                    f"spillway: component '{comp}' is enabled but {lib} was not "
                    f"installed into {libdir}")

    def package_info(self):
        # find_package(spillway CONFIG) with targets spillway::core,
        # spillway::testing, spillway::redis, spillway::pqxx,
        # spillway::prometheus: the names of our own CMake package. Component
        # requires mirror target_link_libraries() in lib/*/CMakeLists.txt
        # (PRIVATE ones too: a static library needs them at link time).
        # Abseil components are named absl_<target> on ConanCenter.
        # pkg_config_name: PkgConfigDeps writes spillway-<component>.pc for
        # consumers (the CMake build's own .pc files are removed in
        # package()).
        self.cpp_info.set_property("cmake_file_name", "spillway")
        self.cpp_info.set_property("cmake_target_name", "spillway::spillway")
        self.cpp_info.set_property("pkg_config_name", "spillway")

        def component(name, requires):
            comp = self.cpp_info.components[name]
            comp.set_property("cmake_target_name", f"spillway::{name}")
            comp.set_property("pkg_config_name", f"spillway-{name}")
            comp.libs = [f"spillway_{name}"]
            comp.requires = requires
            return comp

        core = component("core", [
            "abseil::absl_status",
            "abseil::absl_statusor",
            "abseil::absl_strings",
            "abseil::absl_str_format",
            "abseil::absl_time",
            "abseil::absl_span",
            "abseil::absl_function_ref",
            "abseil::absl_core_headers",
        ])
        if self.settings.os in ("Linux", "FreeBSD"):
            core.system_libs = ["pthread"]  # Threads::Threads

        component("testing", ["core", "abseil::absl_flat_hash_map"])

        if self.options.with_redis:
            # "hiredis::hiredis": Conan maps pkg::pkg to the whole hiredis
            # package (its component is called "hiredislib").
            component("redis", ["core", "abseil::absl_flat_hash_map",
                                "abseil::absl_random_random", "hiredis::hiredis"])
        if self.options.with_pqxx:
            component("pqxx", ["core", "libpqxx::libpqxx"])
        if self.options.with_prometheus:
            component("prometheus", ["core", "prometheus-cpp::prometheus-cpp-core"])
