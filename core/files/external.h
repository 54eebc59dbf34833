// External resources: files the tree shares with processes outside it (a
// pipe whose other end a shim, a supervisor or make holds), and CRIU's
// `restore --inherit-fd fd[N]:KEY`, by which the caller of a restore hands
// over fds of its own to stand in for such files.
//
// The keys are CRIU's: "pipe:[INODE]" for a pipe, "tty[RDEV:DEV]" (hex) for
// a terminal, and for a regular file its path without the leading slash
// ("tmp/log"). `cryo inspect` lists the external pipes and inherited files
// of an image with their keys.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/image/proto/files.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"

namespace cryo::files {

std::string pipe_key(uint64_t inode);
std::string tty_key(uint64_t rdev, uint64_t dev);

// One `--inherit-fd` argument: `fd[N]:KEY`, or `debug[N]:TEXT` (TEXT is
// written to fd N, a marker in the caller's stream; nothing is inherited).
struct InheritFd {
  int fd = -1;
  std::string key;
  bool debug = false;
};
Result<InheritFd> parse_inherit_fd(const std::string& arg);

// The key --inherit-fd names description f by; "" when it cannot be named.
std::string inherit_key(const image::FileDesc& f, const image::Files& files);

// Which of the caller's fds stands in for which description (file id -> fd).
// Fails naming the argument when its fd is not open, when its key names
// nothing in the image, or names a file cryo cannot hand over.
Result<std::map<uint32_t, int>> match_inherit_fds(const image::Files& files, const std::vector<InheritFd>& fds);

// The description the tree gets in place of f, made from the caller's fd: a
// pipe is reopened through it with f's access mode and flags (a description
// of the tree's own on the caller's pipe, which sees none of its queued
// bytes: they were the old holder's); anything else is the caller's own
// description, shared.
Result<UniqueFd> open_inherited(const image::FileDesc& f, int caller_fd);

}  // namespace cryo::files
