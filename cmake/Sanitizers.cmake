# CPPETCD_SANITIZE=address -> ASan + UBSan; thread -> TSan. Applied to every
# target so that libraries and tests agree. -g1 (line tables and function
# names: all that sanitizer reports and the TSan suppressions use) keeps the
# trees small enough for CI's disk; the last -g option wins over Debug's -g.
if(CPPETCD_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g1)
  add_link_options(-fsanitize=address,undefined)
  # For the few tests that meet a limit of the sanitizer runtime itself.
  add_compile_definitions(CPPETCD_UBSAN=1)
elseif(CPPETCD_SANITIZE STREQUAL "thread")
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer -g1)
  add_link_options(-fsanitize=thread)
elseif(NOT CPPETCD_SANITIZE STREQUAL "")
  message(FATAL_ERROR "CPPETCD_SANITIZE must be '', 'address' or 'thread'")
endif()
