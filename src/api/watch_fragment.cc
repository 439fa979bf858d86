#include "cppetcd/api/watch_fragment.h"

#include <google/protobuf/io/coded_stream.h>

namespace cppetcd::api {

std::vector<etcdserverpb::WatchResponse> FragmentWatchResponse(
    const etcdserverpb::WatchResponse& response, size_t max_bytes) {
  std::vector<etcdserverpb::WatchResponse> out;
  if (response.ByteSizeLong() < max_bytes || response.events_size() < 2) {
    out.push_back(response);
    return out;
  }
  etcdserverpb::WatchResponse shell = response;
  shell.clear_events();
  shell.set_fragment(true);
  // Size of one piece = shell + sum of the events' encodings (tag, length
  // prefix, body); computed incrementally instead of re-serializing.
  const size_t shell_bytes = shell.ByteSizeLong();
  int i = 0;
  const int n = response.events_size();
  while (i < n) {
    etcdserverpb::WatchResponse piece = shell;
    size_t bytes = shell_bytes;
    while (i < n) {
      const size_t ev = response.events(i).ByteSizeLong();
      const size_t ev_bytes = 1 + google::protobuf::io::CodedOutputStream::VarintSize64(ev) + ev;
      if (piece.events_size() > 0 && bytes + ev_bytes >= max_bytes) break;
      *piece.add_events() = response.events(i);
      bytes += ev_bytes;
      ++i;
    }
    if (i == n) piece.set_fragment(false);
    out.push_back(std::move(piece));
  }
  return out;
}

}  // namespace cppetcd::api
