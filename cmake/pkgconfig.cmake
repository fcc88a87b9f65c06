# pkg-config files for the installed components: spillway-<component>.pc.
#
#   pkg-config --cflags --libs spillway-redis
#
# Requires lists what the component's headers and library need; Debian
# ships .pc files for Abseil, hiredis, libpqxx and prometheus-cpp. The
# libraries are static by default, so what they link privately is in
# Requires too (a plain `pkg-config --libs` must link). The files are
# relocatable: prefix is found from the .pc file's own directory.

set(_spillway_pc_core_requires
    "absl_status absl_statusor absl_strings absl_str_format absl_time absl_span absl_function_ref absl_core_headers")
set(_spillway_pc_core_libs "-pthread")
set(_spillway_pc_testing_requires "spillway-core absl_flat_hash_map")
set(_spillway_pc_redis_requires
    "spillway-core absl_flat_hash_map hiredis absl_random_random")
set(_spillway_pc_pqxx_requires "spillway-core libpqxx")
set(_spillway_pc_prometheus_requires
    "spillway-core prometheus-cpp-core absl_flat_hash_map")

function(spillway_pkgconfig component)
  set(PC_NAME "spillway-${component}")
  set(PC_DESCRIPTION "spillway ${component}: write-overload protection for databases")
  set(PC_VERSION "${PROJECT_VERSION}")
  set(PC_REQUIRES "${_spillway_pc_${component}_requires}")
  set(PC_LIBS "-lspillway_${component} ${_spillway_pc_${component}_libs}")
  # From <prefix>/<libdir>/pkgconfig back to <prefix>.
  file(RELATIVE_PATH PC_TO_PREFIX
       "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
  string(REGEX REPLACE "/$" "" PC_TO_PREFIX "${PC_TO_PREFIX}")
  # The library needs C++17; consumers' own flags decide beyond that.
  set(PC_CFLAGS "-std=c++17")
  configure_file(${PROJECT_SOURCE_DIR}/cmake/spillway.pc.in
                 ${PROJECT_BINARY_DIR}/pkgconfig/${PC_NAME}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${PC_NAME}.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()
