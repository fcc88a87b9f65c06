# cmake -P script: install, configure and build the consumer, run it; then
# check that asking for a component that was not built fails clearly.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

set(CONSUMER_COMPONENTS testing)
if(WITH_REDIS)
  list(APPEND CONSUMER_COMPONENTS redis)
endif()
if(WITH_PQXX)
  list(APPEND CONSUMER_COMPONENTS pqxx)
endif()
if(WITH_PROMETHEUS)
  list(APPEND CONSUMER_COMPONENTS prometheus)
endif()
set(BUILT_COMPONENTS core ${CONSUMER_COMPONENTS})
# Commas: run() would split a semicolon list into separate arguments.
string(REPLACE ";" "," CONSUMER_COMPONENTS "${CONSUMER_COMPONENTS}")
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
separate_arguments(CXX_FLAGS_LIST UNIX_COMMAND "${CXX_FLAGS}")
run(${CMAKE_COMMAND} --install ${SPILLWAY_BINARY_DIR} --prefix ${prefix})
run(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build
    -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix}
    "-DCONSUMER_COMPONENTS=${CONSUMER_COMPONENTS}"
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)

# One consumer per component through its pkg-config file alone.
find_program(PKG_CONFIG pkg-config REQUIRED)
file(GLOB libdirs LIST_DIRECTORIES true ${prefix}/lib*)
set(pc_path "")
foreach(d IN LISTS libdirs)
  file(GLOB_RECURSE pcs ${d}/spillway-core.pc)
  foreach(pc IN LISTS pcs)
    get_filename_component(pcdir ${pc} DIRECTORY)
    set(pc_path ${pcdir})
  endforeach()
endforeach()
if(pc_path STREQUAL "")
  message(FATAL_ERROR "no spillway-core.pc under ${prefix}")
endif()
set(ENV{PKG_CONFIG_PATH} "${pc_path}")
foreach(comp IN LISTS BUILT_COMPONENTS)
  execute_process(COMMAND ${PKG_CONFIG} --cflags --libs spillway-${comp}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE flags ERROR_VARIABLE err
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config spillway-${comp} failed: ${err}")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  string(TOUPPER ${comp} upper)
  set(defs "")
  if(NOT comp STREQUAL "core")
    set(defs -DCONSUMER_WITH_${upper})
  endif()
  run(${CXX_COMPILER} ${CXX_FLAGS_LIST} ${defs}
      ${CONSUMER_SOURCE_DIR}/main.cc -o ${WORK_DIR}/pc-${comp} ${flags})
  run(${WORK_DIR}/pc-${comp})
  message(STATUS "pkg-config consumer of spillway-${comp}: ok")
endforeach()

# A component this installation does not have must fail with its name.
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR}
          -B ${WORK_DIR}/build-missing -G ${GENERATOR}
          -DCMAKE_PREFIX_PATH=${prefix} -DCONSUMER_COMPONENTS=nosuchcomponent
          -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "find_package with a missing component succeeded")
endif()
if(NOT "${out}${err}" MATCHES "component 'nosuchcomponent' was not built")
  message(FATAL_ERROR "unclear error for a missing component:\n${out}${err}")
endif()
message(STATUS "missing component rejected with a clear message")
