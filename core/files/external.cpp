#include "core/files/external.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>

namespace cryo::files {
namespace {

constexpr uint32_t kOpenOnly = O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY;

// The pipe behind a description (a PIPE, or a shell job's stdio that was one).
bool is_pipe(const image::FileDesc& f) {
  return f.kind() == image::FileDesc::PIPE || (f.kind() == image::FileDesc::INHERITED && S_ISFIFO(f.mode()));
}

// CRIU names a file by its path without the leading slash; take it with one too.
std::string path_key(const std::string& path) { return path.starts_with("/") ? path.substr(1) : path; }

const char* kind_name(const image::FileDesc& f) {
  switch (f.kind()) {
    case image::FileDesc::DIRECTORY: return "directory";
    case image::FileDesc::CHAR_DEVICE: return S_ISBLK(f.mode()) ? "block device" : "character device";
    case image::FileDesc::FIFO: return "FIFO";
    case image::FileDesc::MAPPED: return "file the tree only maps (no fd holds it)";
    case image::FileDesc::PTY_MASTER:
    case image::FileDesc::PTY_SLAVE:
    case image::FileDesc::TTY_CURRENT: return "pseudo-terminal of the tree's own";
    default: return "file";
  }
}

// Why a key that matches no description names nothing cryo can replace.
std::string why_unmatched(const std::string& key, const image::Files& files) {
  if (key.starts_with("file["))
    return "external files (file[MNT_ID:INODE]) are not supported: cryo saves a file by its path (name it so, "
           "without its leading slash)";
  if (key.starts_with("socket:[")) return "sockets cannot be handed over (not supported)";
  if (key.starts_with("tty["))
    return "names no terminal the tree inherited (only a --shell-job's terminal can be handed over; a "
           "pseudo-terminal of the tree's own comes back as it was)";
  for (const auto& f : files.files())
    if (!f.path().empty() && path_key(f.path()) == path_key(key))
      return "names a " + std::string(kind_name(f)) +
             ", which --inherit-fd cannot replace (only regular files, pipes and terminals)";
  return "names nothing in the image (`cryo inspect` shows the keys of its external pipes and inherited files; "
         "a regular file is named by its path without the leading slash)";
}

}  // namespace

std::string pipe_key(uint64_t inode) { return "pipe:[" + std::to_string(inode) + "]"; }

std::string tty_key(uint64_t rdev, uint64_t dev) {
  char buf[64];
  snprintf(buf, sizeof buf, "tty[%llx:%llx]", static_cast<unsigned long long>(rdev),
           static_cast<unsigned long long>(dev));
  return buf;
}

Result<InheritFd> parse_inherit_fd(const std::string& arg) {
  InheritFd out;
  std::string rest;
  if (arg.starts_with("fd[")) {
    rest = arg.substr(3);
  } else if (arg.starts_with("debug[")) {
    rest = arg.substr(6);
    out.debug = true;
  } else {
    return Error(EINVAL, "--inherit-fd " + arg + ": not fd[N]:KEY (nor debug[N]:TEXT)");
  }
  size_t close = rest.find("]:");
  if (close == 0 || close == std::string::npos || close > 9 || close + 2 == rest.size() ||
      rest.find_first_not_of("0123456789") != close)
    return Error(EINVAL, "--inherit-fd " + arg + ": not fd[N]:KEY (N a descriptor of cryo's, KEY what it replaces)");
  out.fd = std::stoi(rest.substr(0, close));
  out.key = rest.substr(close + 2);
  return out;
}

std::string inherit_key(const image::FileDesc& f, const image::Files& files) {
  switch (f.kind()) {
    case image::FileDesc::PIPE:
      for (const auto& p : files.pipes())
        if (p.id() == f.pipe_id()) return pipe_key(p.inode());
      return "";
    case image::FileDesc::INHERITED:
      return f.inherit_key();
    case image::FileDesc::REGULAR:
      return f.proc_pid() != 0 ? "" : path_key(f.path());  // a file of /proc/PID is the tree's own
    default:
      return "";
  }
}

Result<std::map<uint32_t, int>> match_inherit_fds(const image::Files& files, const std::vector<InheritFd>& fds) {
  std::map<uint32_t, int> out;
  for (const auto& in : fds) {
    if (in.debug) continue;
    std::string arg = "--inherit-fd fd[" + std::to_string(in.fd) + "]:" + in.key;
    struct stat st;
    if (::fstat(in.fd, &st) < 0) return errno_error(arg + ": fd " + std::to_string(in.fd) + " of cryo");
    std::string key = in.key.starts_with("pipe:[") || in.key.starts_with("tty[") ? in.key : path_key(in.key);
    bool matched = false;
    for (const auto& f : files.files()) {
      if (inherit_key(f, files) != key) continue;
      if (is_pipe(f) && !S_ISFIFO(st.st_mode))
        return Error(EINVAL, arg + ": " + key + " is a pipe, and fd " + std::to_string(in.fd) + " is not one");
      if (!out.emplace(f.id(), in.fd).second)
        return Error(EINVAL, arg + ": file " + std::to_string(f.id()) + " of the image is named twice");
      matched = true;
    }
    if (!matched) return Error(EINVAL, arg + ": " + in.key + " " + why_unmatched(key, files));
  }
  return out;
}

Result<UniqueFd> open_inherited(const image::FileDesc& f, int caller_fd) {
  std::string what = "fd " + std::to_string(caller_fd) + " handed over by --inherit-fd";
  if (!is_pipe(f)) {
    UniqueFd fd(::fcntl(caller_fd, F_DUPFD_CLOEXEC, 0));
    if (!fd.valid()) return errno_error("dup " + what);
    return fd;
  }
  // A reopened pipe is open(2)ed as a FIFO: without O_NONBLOCK a write end
  // would wait for a reader, and with it one fails (ENXIO) when there is none.
  int access = static_cast<int>(f.flags() & O_ACCMODE);
  UniqueFd fd(::open(("/proc/self/fd/" + std::to_string(caller_fd)).c_str(), access | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid() && errno == ENXIO)
    return Error(ENXIO, what + ": its pipe has no reader, and the tree's end writes into it");
  if (!fd.valid()) return errno_error("reopen the pipe of " + what);
  if (::fcntl(fd.get(), F_SETFL, f.flags() & ~kOpenOnly) < 0) return errno_error("F_SETFL on the pipe of " + what);
  return fd;
}

}  // namespace cryo::files
