// Fuzz target: etcd's YAML configuration file (--config-file,
// cmd/config_file.cc): the input is written to a file and loaded.
// Invariant: no crash, no uncaught exception from the YAML library (deep
// nesting, anchors and aliases, odd scalars): an error is a Status.
#include <cstdint>
#include <fstream>
#include <string>

#include "cppetcd/cmd/flags.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cppetcd;
  static const std::string path = fuzz::ScratchDir() + "/etcd.conf.yml";
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  (void)cmd::LoadConfigFile(path);
  return 0;
}
