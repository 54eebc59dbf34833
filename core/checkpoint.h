// `cryo dump`: the stages of a checkpoint, in order.
#pragma once

#include <sys/types.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/cgroup/membership.h"
#include "core/hooks/actions.h"
#include "core/ns/net/options.h"
#include "core/pageserver/channel.h"
#include "core/sys/progress.h"
#include "core/sys/result.h"

namespace cryo {

// Whether the environment asks processes to write their own pages
// (CRYO_TASK_WRITES=1): see DumpOptions::task_writes.
inline bool task_writes_wanted() {
  const char* value = std::getenv("CRYO_TASK_WRITES");
  return value && std::string_view(value) == "1";
}

struct DumpOptions {
  pid_t pid = 0;
  std::string images_dir;
  bool shell_job = false;
  std::map<std::string, std::string> external_mounts;  // --external mnt[MOUNT_POINT]:KEY
  bool external_mounts_optional = false;  // CRIU RPC's ext_mnt: points that are no mounts are passed over
  std::vector<std::string> external_ttys;  // --external tty[RDEV:DEV]: terminals outside the tree, handed over on restore
  bool leave_running = false;
  bool tcp_established = false;
  bool tcp_close = false;       // connections saved without their state, restored closed
  bool skip_in_flight = false;  // connections not yet accepted from outside the tree are left out
  bool ext_unix_sk = false;
  uint64_t ghost_limit = 256ULL << 20;  // bytes of a deleted file's data the image may take
  // Processes with enough memory write their own pages (core/mm/task_write.h)
  // instead of cryo reading them: off unless CRYO_TASK_WRITES=1 (slower on
  // the machines measured since the pages go to several files: mm_dump.h).
  bool task_writes = task_writes_wanted();
  int freeze_timeout_s = 10;  // how long finding and stopping the tree may take
  std::string network_lock = "nftables";  // nftables or skip
  std::string freeze_cgroup;  // a v1 freezer or v2 cgroup holding the tree alone: frozen to seize it
  std::vector<cgroup::CgroupRoot> cgroup_roots;  // --cgroup-root: saved cgroups stop there, not at cryo's own
  hooks::Actions actions;  // --action-script
  ns::NetNsDumpOptions net_ns;  // --empty-ns net, --external net[INODE]:KEY
  std::optional<pageserver::Endpoint> page_server;  // --page-server: pages.img goes there
  // --prev-images-dir: a pre-dump (relative to images_dir, or absolute)
  // whose pages this image keeps where nothing wrote them since.
  std::string prev_images_dir;
  // --lazy-pages (a lazy migration's source): the pages of private anonymous
  // memory stay in the frozen tree and are served from this address to
  // `cryo lazy-pages --page-server` on the destination; the tree goes (or
  // runs on, with leave_running) once the daemon has every page it needs.
  // Should the daemon go away first, the dump fails and the tree runs on.
  std::optional<pageserver::Endpoint> lazy_pages;
  // Called once the image is written and the pages are served, with the port.
  std::function<void(int port)> on_lazy_ready;
};

struct DumpResult {
  uint64_t freeze_us = 0;  // the longest time the tree was stopped at once
  uint64_t freeze_cpu_us = 0;  // CPU time cryo used while the tree was frozen for the dump proper
  uint64_t precopy_freeze_us = 0;  // how long it was stopped to start write tracking (Precopy)
  uint64_t precopy_us = 0;  // how long its memory was copied while it ran
  uint64_t total_us = 0;
  uint64_t pages_bytes = 0;
  // Bytes of pages copied out of the tasks into cryo, read by the zero-page
  // test and by the checksum (mm::DumpStats): against pages_bytes, how many
  // passes a dump makes over the memory besides writing it once.
  uint64_t pages_copied_in = 0, pages_zero_tested = 0, pages_checksummed = 0;
  uint64_t pages_written_by_tasks = 0;  // of pages_copied_in: written into page files by the tasks (mm/task_write.h)
  size_t tasks = 0;
  // Threads that copied pages into the page files at once (mm::PageCopies), the
  // most of any pass: one per CPU for a large tree, 1 for a small one.
  unsigned page_writers = 0;
  std::vector<progress::PhaseTime> phases;  // in order: freezing, reading the tree, writing memory, ...
};

// Freezes the tree rooted at options.pid, writes its image and kills it (or
// lets it run with leave_running). On any failure the tree runs on as before.
Result<DumpResult> checkpoint(const DumpOptions& options);

// `cryo pre-dump`: copies the tree's memory into an image of pages only and
// leaves the tree running with its writes tracked (core/mm/tracking.h), so
// that a dump (or another pre-dump) naming this image as its parent stores
// only the pages written since.
Result<DumpResult> pre_dump(const DumpOptions& options);

}  // namespace cryo
