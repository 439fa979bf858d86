// Umbrella header of the raft module: Storage/MemoryStorage, errors, Config,
// Ready and RawNode. See raw_node.h and storage.h.
#ifndef CPPETCD_RAFT_RAFT_H_
#define CPPETCD_RAFT_RAFT_H_

#include "cppetcd/raft/raw_node.h"
#include "cppetcd/raft/storage.h"

#endif  // CPPETCD_RAFT_RAFT_H_
