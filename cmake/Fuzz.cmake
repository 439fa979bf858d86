# CPPETCD_FUZZ=ON: coverage-guided fuzzing with libFuzzer under ASan+UBSan.
# The libraries get the coverage instrumentation without libFuzzer's main
# (fuzzer-no-link); tests/fuzz links each target with -fsanitize=fuzzer.
if(CPPETCD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "CPPETCD_FUZZ needs clang: configure with CC=clang CXX=clang++")
  endif()
  if(NOT CPPETCD_SANITIZE STREQUAL "")
    message(FATAL_ERROR "CPPETCD_FUZZ brings its own sanitizers; leave CPPETCD_SANITIZE empty")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
