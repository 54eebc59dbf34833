# Small helpers shared by every folder's CMakeLists.txt.

set(CRYO_WARNINGS -Wall -Wextra -Werror -Wshadow -Wno-missing-field-initializers)

# -DCRYO_SANITIZE=ON: cryo and its unit tests under ASan and UBSan (the C
# workloads stay plain: a restored process cannot keep ASan's shadow maps).
# Run the integration tests against it with CRYO_OVERRIDE=<build>/runtime/cryo.
option(CRYO_SANITIZE "build cryo with AddressSanitizer and UBSan" OFF)
if(CRYO_SANITIZE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined> $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options($<$<LINK_LANGUAGE:CXX>:-fsanitize=address,undefined>)
endif()

# -DCRYO_FUZZ=ON (clang only, its own tree: tests/fuzz/run-fuzz.sh makes it):
# everything compiled with libFuzzer's coverage, ASan and UBSan, any finding
# fatal, and the fuzz targets of tests/fuzz/ added.
option(CRYO_FUZZ "build the libFuzzer targets of tests/fuzz (needs clang)" OFF)
if(CRYO_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "CRYO_FUZZ needs clang: configure with CC=clang-14 CXX=clang++-14")
  endif()
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link,address,undefined>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=all>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options($<$<LINK_LANGUAGE:CXX>:-fsanitize=address,undefined>)
  # The g++ tree enforces the warnings; clang has some of its own (glibc's
  # NLMSG_OK under -Wsign-compare) that must not stop the fuzzers.
  list(APPEND CRYO_WARNINGS -Wno-error)
endif()

# cryo_library(NAME SOURCES... [DEPS libs...])
function(cryo_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE ${CRYO_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# cryo_test(NAME SOURCES... [DEPS libs...]): a doctest unit test run by ctest.
function(cryo_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES} ${PROJECT_SOURCE_DIR}/tests/doctest_main.cpp)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR} ${DOCTEST_INCLUDE_DIR})
  target_compile_options(${name} PRIVATE ${CRYO_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  add_test(NAME unit.${name} COMMAND ${name})
  set_tests_properties(unit.${name} PROPERTIES LABELS unit TIMEOUT 120)
endfunction()
