# cppetcd_warnings(target): the project's warning set for its own code.
add_library(cppetcd_warnings INTERFACE)
target_compile_options(cppetcd_warnings INTERFACE
  -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
  $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor>)
