// fanotify groups: their init flags and marks (on inodes, found again by
// their file handles; on mounts; on filesystems). A group with events not
// yet read is refused: they cannot be saved without taking them away.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::files {

// What the fdinfo text of a fanotify fd says.
struct FanotifyInfo {
  struct Mark {
    image::Fanotify::Mark::Kind kind = image::Fanotify::Mark::INODE;
    uint32_t mflags = 0;
    uint64_t mask = 0, ignored_mask = 0;
    uint64_t ino = 0;     // INODE
    uint32_t sdev = 0;    // INODE, FILESYSTEM: the kernel's dev_t (major << 20 | minor)
    uint64_t mnt_id = 0;  // MOUNT
    int handle_type = 0;  // INODE
    std::string handle;
  };
  uint32_t flags = 0, event_f_flags = 0;
  std::vector<Mark> marks;
};
Result<FanotifyInfo> parse_fanotify_fdinfo(std::string_view text);

// Describes the group behind fd `fd` of `pid` (whose fdinfo is `text`);
// `copy` is cryo's own copy of that fd. tree_root ("/proc/PID/root") is
// that of the tree's own mount namespace, where the marked files and mounts
// are found by the tree's names; "" when the tree shares cryo's.
Status dump_fanotify(pid_t pid, int copy, std::string_view text, const std::string& tree_root,
                     image::Fanotify* out);

// A new group with the same flags and marks, whose files and mounts are
// looked up under root (an O_PATH fd of the root of the tree's own mount
// namespace; -1: cryo's).
Result<UniqueFd> open_fanotify(const image::Fanotify& group, int root = -1);

}  // namespace cryo::files
