#include "core/files/bpf_map.h"

#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/sys/io.h"

namespace cryo::files {
namespace {

constexpr uint64_t kMaxContents = 256ULL << 20;  // keys and values the image takes of one map

long bpf(int cmd, union bpf_attr* attr) { return ::syscall(SYS_bpf, cmd, attr, sizeof *attr); }

bool per_cpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}
bool array(uint32_t type) { return type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY; }
bool supported(uint32_t type) {
  return array(type) || type == BPF_MAP_TYPE_HASH || type == BPF_MAP_TYPE_PERCPU_HASH ||
         type == BPF_MAP_TYPE_LRU_HASH || type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

// What a lookup of a per-cpu map returns: each possible CPU's value, 8-byte aligned.
Result<uint32_t> possible_cpus() {
  CRYO_ASSIGN(std::string text, read_file("/sys/devices/system/cpu/possible"));
  // "0-N" or "0": the highest number plus one.
  size_t dash = text.find_last_of("-,");
  return static_cast<uint32_t>(std::strtoul(text.c_str() + (dash == std::string::npos ? 0 : dash + 1), nullptr, 10) + 1);
}

uint64_t value_bytes(uint32_t type, uint32_t value_size, uint32_t ncpus) {
  return per_cpu(type) ? uint64_t{(value_size + 7u) / 8u * 8u} * ncpus : value_size;
}

Result<struct bpf_map_info> map_info(int fd) {
  struct bpf_map_info info{};
  union bpf_attr a{};
  a.info.bpf_fd = static_cast<uint32_t>(fd);
  a.info.info_len = sizeof info;
  a.info.info = reinterpret_cast<uint64_t>(&info);
  if (bpf(BPF_OBJ_GET_INFO_BY_FD, &a) < 0) return errno_error("BPF_OBJ_GET_INFO_BY_FD");
  return info;
}

std::string map_name(const struct bpf_map_info& info) {
  return "BPF map " + std::string(info.name, strnlen(info.name, sizeof info.name)) + " (id " + std::to_string(info.id) +
         ")";
}

}  // namespace

Result<uint32_t> bpf_map_id(int copy) {
  CRYO_ASSIGN(auto info, map_info(copy));
  return info.id;
}

Status dump_bpf_map(int copy, std::string_view fdinfo, uint32_t flags, image::BpfMap* out) {
  CRYO_ASSIGN(auto info, map_info(copy));
  std::string what = map_name(info);
  if (!supported(info.type))
    return Error(what + " of type " + std::to_string(info.type) +
                 " (only array, hash and their per-cpu and LRU variants are supported)");
  if (info.ifindex != 0) return Error(what + " is offloaded to a device (not supported)");
  if (info.btf_id != 0 || info.btf_vmlinux_value_type_id != 0)
    return Error(what + " carries BTF type information (not supported)");
  if (info.map_flags & BPF_F_NUMA_NODE) return Error(what + " is bound to a NUMA node (not supported)");
  if (info.map_flags & BPF_F_WRONLY) return Error(what + " is write-only from user space: its contents cannot be read");
  // Its fd may read or write less than the map allows (a map opened again by
  // id with BPF_F_RDONLY): a new map's fd would allow more.
  uint32_t fd_mode = flags & O_ACCMODE;
  uint32_t map_mode = (info.map_flags & BPF_F_RDONLY) ? O_RDONLY : O_RDWR;
  if (fd_mode != map_mode) return Error(what + " is held through an fd of narrower access than the map (not supported)");

  CRYO_ASSIGN(uint32_t ncpus, possible_cpus());
  out->set_type(info.type);
  out->set_key_size(info.key_size);
  out->set_value_size(info.value_size);
  out->set_max_entries(info.max_entries);
  out->set_flags(info.map_flags);
  out->set_name(std::string(info.name, strnlen(info.name, sizeof info.name)));
  out->set_map_extra(info.map_extra);
  out->set_frozen(fdinfo.find("\nfrozen:\t1") != std::string_view::npos);
  if (per_cpu(info.type)) out->set_ncpus(ncpus);

  uint64_t vbytes = value_bytes(info.type, info.value_size, ncpus);
  if (uint64_t{info.max_entries} * (info.key_size + vbytes) > kMaxContents)
    return Error(what + " may hold more than " + std::to_string(kMaxContents >> 20) + " MiB (not supported)");
  std::string key(info.key_size, '\0'), next(info.key_size, '\0'), value(vbytes, '\0');
  bool first = true;
  for (uint32_t n = 0; n <= info.max_entries; n++) {
    union bpf_attr a{};
    a.map_fd = static_cast<uint32_t>(copy);
    a.key = first ? 0 : reinterpret_cast<uint64_t>(key.data());
    a.next_key = reinterpret_cast<uint64_t>(next.data());
    if (bpf(BPF_MAP_GET_NEXT_KEY, &a) < 0) {
      if (errno == ENOENT) return {};
      return errno_error(what + ": BPF_MAP_GET_NEXT_KEY");
    }
    first = false;
    key = next;
    union bpf_attr l{};
    l.map_fd = static_cast<uint32_t>(copy);
    l.key = reinterpret_cast<uint64_t>(key.data());
    l.value = reinterpret_cast<uint64_t>(value.data());
    if (bpf(BPF_MAP_LOOKUP_ELEM, &l) < 0) {
      if (errno == ENOENT) continue;  // gone between the two calls (a program in another process)
      return errno_error(what + ": BPF_MAP_LOOKUP_ELEM");
    }
    // A new array map holds zeros: only other values need writing.
    if (array(info.type) && std::all_of(value.begin(), value.end(), [](char c) { return c == 0; })) continue;
    if (info.map_flags & BPF_F_RDONLY)
      return Error(what + " is read-only from user space and not empty: its contents could not be written back");
    auto* e = out->add_entries();
    e->set_key(key);
    e->set_value(value);
  }
  return Error(what + ": more keys than max_entries (changing while the tree was frozen?)");
}

Error refuse_bpf_object(int copy, const std::string& kind) {
  if (kind == "bpf-prog") {
    struct bpf_prog_info info{};
    union bpf_attr a{};
    a.info.bpf_fd = static_cast<uint32_t>(copy);
    a.info.info_len = sizeof info;
    a.info.info = reinterpret_cast<uint64_t>(&info);
    if (bpf(BPF_OBJ_GET_INFO_BY_FD, &a) == 0)
      return Error("BPF program " + std::string(info.name, strnlen(info.name, sizeof info.name)) + " (id " +
                   std::to_string(info.id) + ", type " + std::to_string(info.type) +
                   ") is not supported: a program cannot be loaded again as the kernel verified it");
    return Error("BPF program is not supported");
  }
  if (kind == "bpf_link") {
    struct bpf_link_info info{};
    union bpf_attr a{};
    a.info.bpf_fd = static_cast<uint32_t>(copy);
    a.info.info_len = sizeof info;
    a.info.info = reinterpret_cast<uint64_t>(&info);
    if (bpf(BPF_OBJ_GET_INFO_BY_FD, &a) == 0)
      return Error("BPF link (id " + std::to_string(info.id) + ", program id " + std::to_string(info.prog_id) +
                   ") is not supported: BPF programs cannot be loaded again");
  }
  return Error("BPF object " + kind + " is not supported");
}

Result<UniqueFd> open_bpf_map(const image::BpfMap& map) {
  std::string what = "BPF map " + map.name();
  if (!supported(map.type())) return Error(EINVAL, what + ": unsupported type " + std::to_string(map.type()));
  if (map.name().size() >= BPF_OBJ_NAME_LEN) return Error(EINVAL, what + ": the name is too long");
  uint32_t ncpus = 1;
  if (per_cpu(map.type())) {
    CRYO_ASSIGN(ncpus, possible_cpus());
    if (ncpus != map.ncpus())
      return Error(EINVAL, what + ": per-cpu values of " + std::to_string(map.ncpus()) + " CPUs, this machine has " +
                               std::to_string(ncpus));
  }
  union bpf_attr a{};
  a.map_type = map.type();
  a.key_size = map.key_size();
  a.value_size = map.value_size();
  a.max_entries = map.max_entries();
  a.map_flags = map.flags();
  a.map_extra = map.map_extra();
  std::memcpy(a.map_name, map.name().data(), map.name().size());
  UniqueFd fd(static_cast<int>(bpf(BPF_MAP_CREATE, &a)));
  if (!fd.valid()) return errno_error(what + ": BPF_MAP_CREATE");
  uint64_t vbytes = value_bytes(map.type(), map.value_size(), ncpus);
  bool hash = !array(map.type());
  for (const auto& e : map.entries()) {
    if (e.key().size() != map.key_size() || e.value().size() != vbytes)
      return Error(EINVAL, what + ": an entry of the wrong size");
    union bpf_attr u{};
    u.map_fd = static_cast<uint32_t>(fd.get());
    u.key = reinterpret_cast<uint64_t>(e.key().data());
    u.value = reinterpret_cast<uint64_t>(e.value().data());
    u.flags = hash ? BPF_NOEXIST : BPF_ANY;
    if (bpf(BPF_MAP_UPDATE_ELEM, &u) < 0) return errno_error(what + ": BPF_MAP_UPDATE_ELEM");
  }
  if (hash) {
    // An LRU map may make room by evicting before it is full: every key must be there.
    std::string value(vbytes, '\0');
    for (const auto& e : map.entries()) {
      union bpf_attr l{};
      l.map_fd = static_cast<uint32_t>(fd.get());
      l.key = reinterpret_cast<uint64_t>(e.key().data());
      l.value = reinterpret_cast<uint64_t>(value.data());
      if (bpf(BPF_MAP_LOOKUP_ELEM, &l) < 0) return errno_error(what + ": an entry was lost while refilling it");
    }
  }
  if (map.frozen()) {
    union bpf_attr f{};
    f.map_fd = static_cast<uint32_t>(fd.get());
    if (bpf(BPF_MAP_FREEZE, &f) < 0) return errno_error(what + ": BPF_MAP_FREEZE");
  }
  return fd;
}

}  // namespace cryo::files
