// The tree's IPC namespace.
//
// A tree whose root has an IPC namespace of its own (`unshare --ipc`, a
// container) is saved with everything in it: System V shared memory
// segments (attached or not, with their data), semaphore sets, message
// queues with their messages, POSIX message queues with theirs, and the
// namespace's sysctls. The dump reads them from inside (setns of cryo's
// thread, and back); the restore's root stub makes a new namespace and the
// objects in it, each with its recorded id, before it forks the rest.
#pragma once

#include <sys/types.h>

#include <optional>

#include "core/image/image.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/ipc.pb.h"
#include "core/mm/mm_dump.h"
#include "core/ns/pid_ns.h"
#include "core/sys/result.h"
#include "core/tree/freeze.h"

namespace cryo::ns {

// Nothing when the root shares cryo's IPC namespace. Otherwise every object
// of the root's, segment data written to pages. A process outside the tree
// in that namespace refuses the dump (it would miss it after a restore), as
// do objects cryo cannot make again (SHM_LOCK, mq_notify). The
// namespace is left as it was: POSIX queues, whose messages can only be
// read by taking them, get them back at once.
Result<std::optional<image::IpcNamespace>> dump_ipc_ns(const tree::FrozenTree& tree, const PidMap& pids,
                                                     image::PageWriter& pages, mm::DumpStats* stats);

// A hostile image cannot make the restore write other sysctls or objects
// than an IPC namespace has.
Status validate_ipc_ns(const image::IpcNamespace& ipc, const image::Files& files);

// In the root stub, before it forks the rest: unshare(CLONE_NEWIPC), then
// the sysctls and every object, each with its recorded id, key, owner and
// contents. A failure kills the stub, and the namespace goes with it.
Status make_ipc_ns(const image::IpcNamespace& ipc, const image::ImageDirReader& images);

// In each stub, once the namespace is made: a semaphore the process was the
// last to change gets it as its sempid again (an operation that leaves its
// value as it is).
Status take_semaphore_pids(const image::IpcNamespace& ipc, pid_t pid);

// Once the restored tree runs: the segments that were removed at dump time
// (IPC_RMID, kept while attached) are removed again, by a helper process
// that joins the namespace of pid (the restorer stays in its own).
Status remove_ipc_segments(pid_t pid, const image::IpcNamespace& ipc);

}  // namespace cryo::ns
