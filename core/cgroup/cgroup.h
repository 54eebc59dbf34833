// cgroup v1 and v2: creating a group, moving processes into it, limits,
// the freezer, killing and removal. v1 ("legacy", possibly with a cgroup2
// mount beside it: "hybrid") and pure v2 are told apart from what is mounted.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/sys/result.h"

namespace cryo::cgroup {

struct DeviceRule {
  bool allow = false;
  char type = 'a';  // a, c, b
  int64_t major = -1, minor = -1;  // -1: any
  std::string access = "rwm";
};

struct ThrottleDevice {
  int64_t major = 0, minor = 0;
  uint64_t rate = 0;
};

struct WeightDevice {
  int64_t major = 0, minor = 0;
  std::optional<uint16_t> weight;
};

struct Resources {
  // memory
  std::optional<int64_t> memory_limit, memory_reservation, memory_swap;
  std::optional<uint64_t> memory_swappiness;
  bool disable_oom_killer = false;
  // cpu
  std::optional<uint64_t> cpu_shares, cpu_period, cpu_rt_period;
  std::optional<int64_t> cpu_quota, cpu_rt_runtime;
  std::string cpuset_cpus, cpuset_mems;
  // pids
  std::optional<int64_t> pids_limit;
  // blockIO
  std::optional<uint16_t> blkio_weight;
  std::vector<WeightDevice> blkio_weight_devices;
  std::vector<ThrottleDevice> throttle_read_bps, throttle_write_bps, throttle_read_iops, throttle_write_iops;
  // hugepages: page size ("2MB") to limit
  std::map<std::string, uint64_t> hugepage_limits;
  std::vector<DeviceRule> devices;
  // v2 only: file name to value, written as is
  std::map<std::string, std::string> unified;
};

enum class Mode { kLegacy, kHybrid, kUnified };

struct Hierarchy {
  std::string mount_point;  // /sys/fs/cgroup/memory
  std::vector<std::string> controllers;  // {"memory"} or {"name=systemd"}; empty for v2
  bool v2 = false;
};

// The cgroup mounts of this host, from mountinfo text.
std::vector<Hierarchy> parse_hierarchies(const std::string& mountinfo);
Result<std::vector<Hierarchy>> host_hierarchies();
Mode mode_of(const std::vector<Hierarchy>& hierarchies);

// Makes the missing levels of `path` in `h`, each added to `created`; a new
// v1 cpuset gets its parent's CPUs and memory nodes (it has none of its own).
Status make_path(const Hierarchy& h, const std::string& path, std::vector<std::string>* created);

// One container's cgroup: the same relative path in every hierarchy.
class Group {
 public:
  Group() = default;
  Group(std::vector<Hierarchy> hierarchies, std::string path)
      : hierarchies_(std::move(hierarchies)), path_(std::move(path)) {}

  const std::string& path() const { return path_; }
  // The directory of this group in the hierarchy that has `controller` ("" = the v2 one).
  std::optional<std::string> dir_for(const std::string& controller) const;
  std::vector<std::string> dirs() const;

  Status create();
  Status add_process(pid_t pid);
  Status apply(const Resources& resources);
  Result<std::vector<pid_t>> processes() const;
  Status freeze();
  Status thaw();
  Result<bool> frozen() const;
  // Kills every process (cgroup.kill on v2 when the signal is SIGKILL).
  Status signal_all(int signal);
  // Removes every directory, waiting briefly for exiting tasks.
  Status destroy();
  // Kernel counters for `events --stats` as flat name/value pairs.
  std::map<std::string, uint64_t> stats() const;

 private:
  std::string v2_root() const;
  std::vector<Hierarchy> hierarchies_;
  std::string path_;
};

// v2 resource files as (file, value) pairs, in the order they must be written.
// Pure, so that unit tests check the conversions.
Result<std::vector<std::pair<std::string, std::string>>> v2_files(const Resources& r);
// v1 files: (controller, file, value).
Result<std::vector<std::tuple<std::string, std::string, std::string>>> v1_files(const Resources& r);
// Writes v2 files into a directory laid out like cgroupfs v2; fails naming the
// controller when its files are absent (controller not enabled).
Status apply_v2(const std::string& dir, const Resources& r);

// OCI shares (2..262144) to v2 cpu.weight (1..10000); blkio weight (10..1000) to io.weight.
uint64_t shares_to_weight(uint64_t shares);
uint64_t blkio_to_io_weight(uint64_t weight);

}  // namespace cryo::cgroup
