// Device access rules on cgroup v2: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE)
// attached to the group. Rules are OCI/v1 style, later rules winning.
#pragma once

#include <linux/bpf.h>

#include <string>
#include <vector>

#include "core/cgroup/cgroup.h"
#include "core/sys/result.h"

namespace cryo::cgroup {

// The program for the rules: a request matching no rule is denied. Pure.
std::vector<bpf_insn> device_filter_program(const std::vector<DeviceRule>& rules);
// Loads the program and attaches it to the cgroup v2 directory (BPF_F_ALLOW_MULTI).
Status attach_device_filter(const std::string& dir, const std::vector<DeviceRule>& rules);

}  // namespace cryo::cgroup
