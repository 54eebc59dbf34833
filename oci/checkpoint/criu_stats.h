// CRIU's statistics files, stats-dump and stats-restore, in the work
// directory: Podman exports stats-dump with a checkpoint and reads both for
// --print-stats (through go-criu). A CRIU image of one message: the service
// image magic, the stats magic, the payload size, a protobuf stats_entry.
#pragma once

#include <cstdint>
#include <string>

#include "core/sys/result.h"

namespace cryo::oci {

struct CriuDumpStats {
  uint64_t frozen_us = 0;     // how long the tree was stopped
  uint64_t pages_written = 0;
  uint64_t freezing_us = 0;   // how long stopping it took
  uint64_t memdump_us = 0;    // how long its memory took to write
};

struct CriuRestoreStats {
  uint64_t restore_us = 0;
  uint64_t forking_us = 0;    // how long making the processes took
};

Status write_criu_dump_stats(const std::string& work_dir, const CriuDumpStats& stats);
Status write_criu_restore_stats(const std::string& work_dir, const CriuRestoreStats& stats);

}  // namespace cryo::oci
