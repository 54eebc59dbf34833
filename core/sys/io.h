// Syscall wrappers that retry EINTR and report what failed.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo {

Result<UniqueFd> open_file(const std::string& path, int flags, mode_t mode = 0);
Result<UniqueFd> open_at(int dirfd, const std::string& path, int flags, mode_t mode = 0);
// The whole contents of a (small or /proc) file.
Result<std::string> read_file(const std::string& path);
Result<std::string> read_fd(int fd);
Result<std::string> read_link(const std::string& path);
Status write_all(int fd, const void* data, size_t size);
Status write_all(int fd, std::string_view data);
Status pwrite_all(int fd, const void* data, size_t size, off_t offset);
Status pread_all(int fd, void* data, size_t size, off_t offset);
// Whether write_file_atomic waits for the disk (fsync) before the rename: a
// cache of cryo's own may be lost with a crash of the machine.
enum class Durability { kSynced, kCacheOnly };
// Writes a file under a temporary name of this process's and renames it into
// place: a reader sees the old file or the new one whole, never a mix of two
// writers'. Nothing is left behind when it fails.
Status write_file_atomic(const std::string& path, std::string_view data, Durability durability = Durability::kSynced);

}  // namespace cryo
