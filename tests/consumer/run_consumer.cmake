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

set(CONSUMER_COMPONENTS "")
if(WITH_REDIS)
  list(APPEND CONSUMER_COMPONENTS redis)
endif()
if(WITH_PQXX)
  list(APPEND CONSUMER_COMPONENTS pqxx)
endif()
# Commas: run() would split a semicolon list into separate arguments.
string(REPLACE ";" "," CONSUMER_COMPONENTS "${CONSUMER_COMPONENTS}")
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${SPILLWAY_BINARY_DIR} --prefix ${prefix})
run(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build
    -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix}
    "-DCONSUMER_COMPONENTS=${CONSUMER_COMPONENTS}"
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)

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
