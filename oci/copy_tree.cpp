#include "oci/copy_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sys/fd.h"

namespace cryo::oci {
namespace {

Status copy_file(int src_dir, const std::string& name, const std::string& to, const struct stat& st) {
  UniqueFd in(::openat(src_dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return errno_error("open " + name);
  UniqueFd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777));
  if (!out) return errno_error("create " + to);
  for (off_t left = st.st_size; left > 0;) {
    ssize_t n = ::sendfile(out.get(), in.get(), nullptr, static_cast<size_t>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("copy " + to);
    if (n == 0) break;
    left -= n;
  }
  return {};
}

Status copy_entry(int src_dir, const std::string& name, const std::string& to) {
  struct stat st;
  if (::fstatat(src_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return errno_error("stat " + name);
  if (S_ISDIR(st.st_mode)) {
    if (::mkdir(to.c_str(), st.st_mode & 07777) < 0) return errno_error("mkdir " + to);
    UniqueFd sub(::openat(src_dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) return errno_error("open " + name);
    CRYO_TRY(copy_tree(sub.get(), to));
    return {};
  }
  if (S_ISREG(st.st_mode)) {
    CRYO_TRY(copy_file(src_dir, name, to, st));
  } else if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = ::readlinkat(src_dir, name.c_str(), target, sizeof target - 1);
    if (n < 0) return errno_error("readlink " + name);
    target[n] = 0;
    if (::symlink(target, to.c_str()) < 0) return errno_error("symlink " + to);
  } else if (::mknod(to.c_str(), st.st_mode, st.st_rdev) < 0) {
    return errno_error("mknod " + to);
  }
  if (::lchown(to.c_str(), st.st_uid, st.st_gid) < 0) return errno_error("chown " + to);
  if (!S_ISLNK(st.st_mode) && ::chmod(to.c_str(), st.st_mode & 07777) < 0) return errno_error("chmod " + to);
  return {};
}

}  // namespace

Status copy_tree(int src_dir, const std::string& dst) {
  UniqueFd listing(::openat(src_dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing) return errno_error("open directory to copy");
  DIR* d = ::fdopendir(listing.get());
  if (!d) return errno_error("fdopendir");
  listing.release();  // owned by d now
  Status result;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    result = copy_entry(::dirfd(d), name, dst + "/" + name);
    if (!result.ok()) break;
  }
  ::closedir(d);
  CRYO_TRY(std::move(result));
  struct stat st;
  if (::fstat(src_dir, &st) < 0) return errno_error("stat directory to copy");
  // The directory itself (a subdirectory's entry was made by copy_entry; this also fixes the top).
  if (::chown(dst.c_str(), st.st_uid, st.st_gid) < 0) return errno_error("chown " + dst);
  if (::chmod(dst.c_str(), st.st_mode & 07777) < 0) return errno_error("chmod " + dst);
  return {};
}

}  // namespace cryo::oci
