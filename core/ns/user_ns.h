// The tree's user namespace.
//
// A tree whose root has a user namespace of its own (a rootless container,
// `unshare --user --map-root-user`) is saved with the namespace's uid and gid
// maps and its setgroups setting. Every other namespace of the tree's own
// must be owned by it (a namespace is owned by the user namespace of the
// process that made it), and it must be a child of cryo's: the restore makes
// one user namespace with the same maps and makes the tree's other
// namespaces from inside it.
//
// Ids: the image records every uid and gid as the tree sees them (as CRIU
// does), so that an image restores under another mapping too. cryo reads
// them from outside (/proc, stat, IPC_STAT give the host's), turns them into
// the tree's view at dump time (to_tree_view) and, at restore time, back
// into the host's view for what cryo makes from outside the namespace
// (to_host_view): tmpfs contents, memfd and deleted files, terminals, socket
// files, host System V segments. What the tree's processes make from inside
// (their credentials, the objects of the tree's IPC namespace) takes the
// tree's view as it is.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <utility>

#include "core/image/proto/files.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/sys/fd.h"
#include "core/sys/result.h"
#include "core/tree/freeze.h"

namespace cryo::ns {

// The rules a tree's namespaces follow (every task's own namespaces are the
// root's, checked elsewhere): each namespace of the root that is not cryo's
// is owned by the root's user namespace, and that one, when it is not
// cryo's, is a child of cryo's. Fails naming the namespace.
Status check_namespace_owners(pid_t root);

// The maps and setgroups of the root's user namespace.
Status dump_user_ns(pid_t root, image::UserNs* out);

// Parses /proc/PID/uid_map text.
Result<std::vector<image::IdMapEntry>> parse_id_map(const std::string& text);

// Checks maps an image brings: what the kernel would accept (at most 340
// ranges, none empty, none overlapping on either side).
Status validate_user_ns(const image::UserNs& ns);

// An id through a map, from outside in (to_inside) or inside out; nullopt
// when the map does not cover it.
std::optional<uint32_t> to_inside(const google::protobuf::RepeatedPtrField<image::IdMapEntry>& map, uint32_t id);
std::optional<uint32_t> to_outside(const google::protobuf::RepeatedPtrField<image::IdMapEntry>& map, uint32_t id);

// Dump: every id of the image into the tree's view (each pointer may be
// null: translated as it is ready). Fails naming the object whose owner the
// namespace does not map.
Status to_tree_view(const image::UserNs& ns, std::map<pid_t, image::Process>* cores, image::Files* files,
                    image::Tree* tree);

// Restore: the ids of what cryo makes from outside the namespace back into
// the host's view.
Status to_host_view(const image::UserNs& ns, image::Files* files, image::MountNs* mounts);

// The user namespace of a restore, made by a child of cryo that holds it
// (clone with CLONE_NEWUSER, its maps written by cryo) and, from inside it,
// makes the empty namespaces the tree needs owned by it: they are held by
// fds, the maker is gone once made.
class UserNsMaker {
 public:
  // flags: CLONE_NEWNET, CLONE_NEWNS, as the tree needs them (a pid
  // namespace needs its init to be opened: the tree's root is cloned in it).
  static Result<UserNsMaker> make(const image::UserNs& ns, int flags);

  int user_fd() const { return user_.get(); }
  int net_fd() const { return net_.get(); }    // -1 unless asked
  int mnt_fd() const { return mnt_.get(); }    // -1 unless asked

 private:
  UniqueFd user_, net_, mnt_;
};

// The host's ids of the namespace's root (uid and gid 0 inside), or of its
// first mapped ids when it maps no root.
std::pair<uid_t, gid_t> host_ids_of_root(const image::UserNs& ns);

// In the tree's root stub, still in cryo's user namespace: takes the root's
// supplementary groups (which a namespace whose setgroups is denied keeps
// for good), joins the user namespace and becomes its root (uid and gid 0
// when the maps have them) with every capability there.
Status enter_user_ns(const image::UserNs& ns, const image::Creds& root_creds, int user_fd);

}  // namespace cryo::ns
