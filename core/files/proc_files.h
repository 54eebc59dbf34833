// Files of /proc: a file of /proc/PID of a process (or thread) of the tree,
// reopened by its holder once every process exists (PIDs come back the
// same), and namespace files (/proc/PID/ns/*), reopened likewise through a
// process of the tree that is in that namespace. Files of
// processes outside the tree, and namespaces no process of the tree is in,
// are refused.
#pragma once

#include <sys/stat.h>

#include <string>

#include "core/image/proto/files.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/ptrace/ptrace.h"
#include "core/sys/result.h"
#include "core/tree/freeze.h"

namespace cryo::files {

// Fills f for fd `fd` of `pid` (whose /proc link is `link`) if it is a file
// of /proc or a namespace file; false if it is neither.
Result<bool> describe_proc_file(pid_t pid, int fd, const struct stat& st, const std::string& link,
                                const tree::FrozenTree& tree, image::FileDesc* f);

// Runs in restored process `pid` (through r, with scratch memory at
// `scratch`): opens its files of /proc/PID again at their fds, each
// description once.
Status reopen_proc_files(ptrace::Remote& r, pid_t pid, uint64_t scratch, const image::Process& core,
                         const image::Files& files);

}  // namespace cryo::files
