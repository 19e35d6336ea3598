# ferry_test(NAME <name> LABEL unit|kernel|e2e SOURCES ... LIBS ... [TIMEOUT s])
# One GoogleTest executable per call, registered with CTest under its tier label.
# Kernel and e2e tests skip themselves (GTEST_SKIP with the reason) when the
# machine lacks what they need; they never pass silently.
function(ferry_test)
  cmake_parse_arguments(T "" "NAME;LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_include_directories(${T_NAME} PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main GTest::gmock Threads::Threads)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  set_tests_properties(${T_NAME} PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT}
    # GTEST_SKIP makes the test print "[  SKIPPED ]"; CTest then reports it as skipped.
    SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]"
    ENVIRONMENT "FERRY_BINARY=${CMAKE_BINARY_DIR}/ferry;FERRY_SOURCE_DIR=${CMAKE_SOURCE_DIR};FERRY_SHARED_DIR=${CMAKE_SOURCE_DIR}/../shared")
endfunction()

# Tests that open an ImageStore in-process hand it build/ferry-unpack (FERRY_UNPACK_PROGRAM):
# the test binary does not sit beside it.
function(ferry_test_uses_unpacker target)
  target_compile_definitions(${target} PRIVATE FERRY_UNPACK_PROGRAM="$<TARGET_FILE:ferry-unpack>")
  add_dependencies(${target} ferry-unpack)
endfunction()
