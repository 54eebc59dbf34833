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
  CHECK(parse_mount_options({"tmpcopyup"})->tmpcopyup);
  CHECK_FALSE(cryo::oci::parse_propagation("sideways").ok());
}

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "oci/path.h"

TEST_CASE("secure_join keeps symlinks inside the rootfs") {
  char tmpl[] = "/tmp/cryo-join-test-XXXXXX";
  std::string root = mkdtemp(tmpl);
  mkdir((root + "/etc").c_str(), 0755);
  mkdir((root + "/real").c_str(), 0755);
  REQUIRE(symlink("/etc/shadow", (root + "/etc/resolv.conf").c_str()) == 0);
  REQUIRE(symlink("../../../../real", (root + "/up").c_str()) == 0);
  REQUIRE(symlink("real/x", (root + "/rel").c_str()) == 0);
  REQUIRE(symlink("loop", (root + "/loop").c_str()) == 0);
  CHECK(*cryo::oci::secure_join(root, "/etc/resolv.conf") == root + "/etc/shadow");
  CHECK(*cryo::oci::secure_join(root, "/up/file") == root + "/real/file");
  CHECK(*cryo::oci::secure_join(root, "/rel") == root + "/real/x");
  CHECK(*cryo::oci::secure_join(root, "/../../etc/./passwd") == root + "/etc/passwd");
  CHECK(*cryo::oci::secure_join(root, "/new/dir") == root + "/new/dir");
  CHECK_FALSE(cryo::oci::secure_join(root, "/loop").ok());
  (void)!system(("rm -rf " + root).c_str());
}
