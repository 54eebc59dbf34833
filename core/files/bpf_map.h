// BPF maps held as fds (bpf(BPF_MAP_CREATE)): array, hash, their per-cpu
// and LRU variants, with their attributes, name, frozen state and contents,
// read through cryo's own copy of the fd. BPF programs, links and other BPF
// objects are refused, named: a program cannot be loaded again as it was.
#pragma once

#include <string>
#include <string_view>

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::files {

// Describes the map behind `copy` (cryo's copy of the task's fd, whose
// fdinfo is `fdinfo` and whose open flags are `flags`).
Status dump_bpf_map(int copy, std::string_view fdinfo, uint32_t flags, image::BpfMap* out);

// The refusal for any other BPF object (anon_inode:bpf-prog, bpf_link...),
// naming it as the kernel does.
Error refuse_bpf_object(int copy, const std::string& kind);

// The map's id, to tell two descriptions of one map apart from two maps.
Result<uint32_t> bpf_map_id(int copy);

// A new map with the same attributes and contents, frozen if it was.
Result<UniqueFd> open_bpf_map(const image::BpfMap& map);

}  // namespace cryo::files
