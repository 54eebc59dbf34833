#include "oci/rootfs.h"

#include <sys/mount.h>

#include <doctest/doctest.h>

using cryo::oci::parse_mount_options;

TEST_CASE("mount options split into flags, propagation and data") {
  auto m = parse_mount_options({"nosuid", "noexec", "rbind", "ro", "rslave", "mode=755", "size=64k"});
  REQUIRE(m.ok());
  CHECK((m->flags & MS_NOSUID));
  CHECK((m->flags & MS_NOEXEC));
  CHECK((m->flags & MS_RDONLY));
  CHECK(m->bind);
  CHECK(m->recursive);
  CHECK(m->propagation == (MS_SLAVE | MS_REC));
  CHECK(m->data == "mode=755,size=64k");
  auto rw = parse_mount_options({"ro", "rw"});
  CHECK_FALSE((rw->flags & MS_RDONLY));
  CHECK((rw->clear & MS_RDONLY));
  CHECK_FALSE(parse_mount_options({"idmap"}).ok());
  CHECK_FALSE(cryo::oci::parse_propagation("sideways").ok());
}
