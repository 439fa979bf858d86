# cppetcd_warnings(target): the project's warning set for its own code.
add_library(cppetcd_warnings INTERFACE)
target_compile_options(cppetcd_warnings INTERFACE
  -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
  $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor>)

# CPPETCD_THREAD_SAFETY_ANALYSIS=ON (clang only): clang's lock analysis
# checks every ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED on a
# util::Mutex (util/mutex.h) or mvcc::RwMutex, and a violation fails the
# build. tests/fuzz/run.sh turns it on in its clang build (docs/testing.md).
option(CPPETCD_THREAD_SAFETY_ANALYSIS "clang -Wthread-safety -Werror=thread-safety on the project's code" OFF)
if(CPPETCD_THREAD_SAFETY_ANALYSIS)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "CPPETCD_THREAD_SAFETY_ANALYSIS needs clang: configure with CC=clang CXX=clang++")
  endif()
  target_compile_options(cppetcd_warnings INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-Wthread-safety -Werror=thread-safety>)
endif()
