// The properties (limits and settings) of one cgroup directory, v1 or v2:
// which files are saved, reading them at dump time and writing them back.
//
// Only a fixed list of files is ever read or written (the same list checks
// a restored image: a hostile one cannot name cgroup.procs or release_agent).
// Not saved: the freezer (--freeze-cgroup handles it), v2 device access (a
// BPF program attached to the cgroup), counters and statistics.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/sys/result.h"

namespace cryo::cgroup {

struct Prop {
  std::string name;   // the file: memory.limit_in_bytes
  std::string value;  // what is written back; several lines are written one by one
  bool operator==(const Prop&) const = default;
};

// The rank of a saved file (lower first: cpuset.cpus and mems before the
// rest), or nullopt for a file cryo does not save. v2: the cgroup2 hierarchy.
std::optional<int> prop_rank(bool v2, std::string_view name);

// Normalizes what a file reads into what is written back ("" when there is
// nothing to write: no throttled devices). Pure.
std::string value_to_save(std::string_view name, std::string_view text);

// The writes that put `value` back: (file, text) pairs in order. devices.list
// becomes a deny of everything and an allow for each rule; a v2
// cgroup.subtree_control "+controller" for each controller missing from
// `current` (what the file reads now). Pure.
std::vector<std::pair<std::string, std::string>> writes_for(const Prop& prop, std::string_view current);

// The saved properties of one cgroup directory, ordered as they are written.
Result<std::vector<Prop>> read_props(bool v2, const std::string& dir);

// Writes the properties into an existing directory, skipping those that read
// the same already. A write the kernel refuses for an order (memsw below the
// memory limit, a v1 quota against its period) is tried again after the rest;
// a failure names the file and the value.
Status write_props(bool v2, const std::string& dir, const std::vector<Prop>& props);

// The v2 controllers the properties need (their files' prefixes).
std::vector<std::string> controllers_needed(const std::vector<Prop>& props);

}  // namespace cryo::cgroup
