// The conversion from resource limits to cgroup files, v1 and v2. Pure.
#include <cstdio>
#include <string>
#include <tuple>

#include "core/cgroup/cgroup.h"

namespace cryo::cgroup {
namespace {

std::string dev(int64_t major, int64_t minor) { return std::to_string(major) + ":" + std::to_string(minor); }

std::string device_rule(const DeviceRule& d) {
  auto num = [](int64_t n) { return n < 0 ? std::string("*") : std::to_string(n); };
  if (d.type == 'a') return "a *:* " + d.access;
  return std::string(1, d.type) + " " + num(d.major) + ":" + num(d.minor) + " " + d.access;
}

}  // namespace

uint64_t shares_to_weight(uint64_t shares) {
  if (shares == 0) return 0;
  if (shares < 2) shares = 2;
  if (shares > 262144) shares = 262144;
  return 1 + ((shares - 2) * 9999) / 262142;
}

uint64_t blkio_to_io_weight(uint64_t weight) {
  if (weight == 0) return 0;
  return 1 + (weight - 10) * 9999 / 990;
}

Result<std::vector<std::pair<std::string, std::string>>> v2_files(const Resources& r) {
  std::vector<std::pair<std::string, std::string>> out;
  auto limit = [](int64_t v) { return v < 0 ? std::string("max") : std::to_string(v); };
  if (r.cpuset_cpus.size()) out.push_back({"cpuset.cpus", r.cpuset_cpus});
  if (r.cpuset_mems.size()) out.push_back({"cpuset.mems", r.cpuset_mems});
  if (r.memory_reservation) out.push_back({"memory.low", limit(*r.memory_reservation)});
  if (r.memory_limit) out.push_back({"memory.max", limit(*r.memory_limit)});
  if (r.memory_swap) {
    // OCI swap is memory+swap; v2 swap.max is swap alone.
    if (*r.memory_swap < 0) {
      out.push_back({"memory.swap.max", "max"});
    } else {
      if (!r.memory_limit || *r.memory_limit < 0)
        return Error(EINVAL, "memory.swap needs memory.limit on cgroup v2");
      if (*r.memory_swap < *r.memory_limit)
        return Error(EINVAL, "memory.swap (" + std::to_string(*r.memory_swap) + ") is below memory.limit");
      out.push_back({"memory.swap.max", std::to_string(*r.memory_swap - *r.memory_limit)});
    }
  }
  if (r.memory_swappiness) return Error(EINVAL, "memory.swappiness is not available on cgroup v2");
  if (r.disable_oom_killer) return Error(EINVAL, "memory.disableOOMKiller is not available on cgroup v2");
  if (r.cpu_shares) out.push_back({"cpu.weight", std::to_string(shares_to_weight(*r.cpu_shares))});
  if (r.cpu_quota || r.cpu_period) {
    std::string quota = r.cpu_quota && *r.cpu_quota > 0 ? std::to_string(*r.cpu_quota) : "max";
    out.push_back({"cpu.max", quota + " " + std::to_string(r.cpu_period ? *r.cpu_period : 100000)});
  }
  if (r.cpu_rt_period || r.cpu_rt_runtime) return Error(EINVAL, "cpu.realtimeRuntime/realtimePeriod are not available on cgroup v2");
  if (r.pids_limit) out.push_back({"pids.max", *r.pids_limit <= 0 ? "max" : std::to_string(*r.pids_limit)});
  if (r.blkio_weight) out.push_back({"io.weight", "default " + std::to_string(blkio_to_io_weight(*r.blkio_weight))});
  for (auto& d : r.blkio_weight_devices)
    if (d.weight) out.push_back({"io.weight", dev(d.major, d.minor) + " " + std::to_string(blkio_to_io_weight(*d.weight))});
  auto io_max = [&](const std::vector<ThrottleDevice>& list, const char* key) {
    for (auto& d : list) out.push_back({"io.max", dev(d.major, d.minor) + " " + key + "=" + std::to_string(d.rate)});
  };
  io_max(r.throttle_read_bps, "rbps");
  io_max(r.throttle_write_bps, "wbps");
  io_max(r.throttle_read_iops, "riops");
  io_max(r.throttle_write_iops, "wiops");
  for (auto& [size, value] : r.hugepage_limits) out.push_back({"hugetlb." + size + ".max", std::to_string(value)});
  for (auto& [file, value] : r.unified) {
    if (file.find('/') != std::string::npos || file.starts_with("."))
      return Error(EINVAL, "unified: bad cgroup file name '" + file + "'");
    out.push_back({file, value});
  }
  return out;
}

Result<std::vector<std::tuple<std::string, std::string, std::string>>> v1_files(const Resources& r) {
  std::vector<std::tuple<std::string, std::string, std::string>> out;
  if (r.cpuset_cpus.size()) out.push_back({"cpuset", "cpuset.cpus", r.cpuset_cpus});
  if (r.cpuset_mems.size()) out.push_back({"cpuset", "cpuset.mems", r.cpuset_mems});
  if (r.memory_reservation) out.push_back({"memory", "memory.soft_limit_in_bytes", std::to_string(*r.memory_reservation)});
  if (r.memory_limit) out.push_back({"memory", "memory.limit_in_bytes", std::to_string(*r.memory_limit)});
  if (r.memory_swap) out.push_back({"memory", "memory.memsw.limit_in_bytes", std::to_string(*r.memory_swap)});
  if (r.memory_swappiness && *r.memory_swappiness <= 100)
    out.push_back({"memory", "memory.swappiness", std::to_string(*r.memory_swappiness)});
  if (r.disable_oom_killer) out.push_back({"memory", "memory.oom_control", "1"});
  if (r.cpu_shares) out.push_back({"cpu", "cpu.shares", std::to_string(*r.cpu_shares)});
  if (r.cpu_period) out.push_back({"cpu", "cpu.cfs_period_us", std::to_string(*r.cpu_period)});
  if (r.cpu_quota) out.push_back({"cpu", "cpu.cfs_quota_us", std::to_string(*r.cpu_quota)});
  if (r.cpu_rt_period) out.push_back({"cpu", "cpu.rt_period_us", std::to_string(*r.cpu_rt_period)});
  if (r.cpu_rt_runtime) out.push_back({"cpu", "cpu.rt_runtime_us", std::to_string(*r.cpu_rt_runtime)});
  if (r.pids_limit) out.push_back({"pids", "pids.max", *r.pids_limit <= 0 ? "max" : std::to_string(*r.pids_limit)});
  if (r.blkio_weight) out.push_back({"blkio", "blkio.weight", std::to_string(*r.blkio_weight)});
  for (auto& d : r.blkio_weight_devices)
    if (d.weight) out.push_back({"blkio", "blkio.weight_device", dev(d.major, d.minor) + " " + std::to_string(*d.weight)});
  auto throttle = [&](const std::vector<ThrottleDevice>& list, const char* file) {
    for (auto& d : list) out.push_back({"blkio", file, dev(d.major, d.minor) + " " + std::to_string(d.rate)});
  };
  throttle(r.throttle_read_bps, "blkio.throttle.read_bps_device");
  throttle(r.throttle_write_bps, "blkio.throttle.write_bps_device");
  throttle(r.throttle_read_iops, "blkio.throttle.read_iops_device");
  throttle(r.throttle_write_iops, "blkio.throttle.write_iops_device");
  for (auto& [size, value] : r.hugepage_limits)
    out.push_back({"hugetlb", "hugetlb." + size + ".limit_in_bytes", std::to_string(value)});
  for (auto& d : r.devices)
    out.push_back({"devices", d.allow ? "devices.allow" : "devices.deny", device_rule(d)});
  if (!r.unified.empty()) return Error(EINVAL, "linux.resources.unified needs a pure cgroup v2 host");
  return out;
}

}  // namespace cryo::cgroup
