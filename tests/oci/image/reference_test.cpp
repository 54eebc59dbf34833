#include "oci/image/reference.h"

#include <doctest/doctest.h>

using cryo::oci::image::parse_reference;
using cryo::oci::image::Transport;

TEST_CASE("oci: and oci-archive: as skopeo spells them: the path ends at the first colon") {
  auto r = parse_reference("oci:/srv/ckpt:v1");
  REQUIRE(r.ok());
  CHECK(r->transport == Transport::kOci);
  CHECK(r->path == "/srv/ckpt");
  CHECK(r->tag == "v1");
  r = parse_reference("oci:rel/dir");
  REQUIRE(r.ok());
  CHECK(r->path == "rel/dir");
  CHECK(r->tag.empty());
  r = parse_reference("oci-archive:/tmp/c.tar:registry.example/ns/name:tag");
  REQUIRE(r.ok());
  CHECK(r->transport == Transport::kOciArchive);
  CHECK(r->path == "/tmp/c.tar");
  CHECK(r->tag == "registry.example/ns/name:tag");
}

TEST_CASE("docker:// and containers-storage: keep what follows for skopeo") {
  auto r = parse_reference("docker://127.0.0.1:5000/ckpt/c1:v1");
  REQUIRE(r.ok());
  CHECK(r->transport == Transport::kDocker);
  CHECK(r->path == "127.0.0.1:5000/ckpt/c1:v1");
  r = parse_reference("containers-storage:[vfs@/a+/b]localhost/c:v1");
  REQUIRE(r.ok());
  CHECK(r->transport == Transport::kContainersStorage);
}

TEST_CASE("malformed references are refused with the reason") {
  auto r = parse_reference("oci:");
  REQUIRE(!r.ok());
  CHECK(r.error().message().find("nothing after the transport") != std::string::npos);
  r = parse_reference("oci::tag");
  REQUIRE(!r.ok());
  CHECK(r.error().message().find("no path") != std::string::npos);
  r = parse_reference("oci:/x:bad tag");
  REQUIRE(!r.ok());
  CHECK(r.error().message().find("invalid tag") != std::string::npos);
  r = parse_reference("docker://hostonly");
  REQUIRE(!r.ok());
  r = parse_reference("ftp://x/y");
  REQUIRE(!r.ok());
  CHECK(r.error().message().find("unknown transport") != std::string::npos);
  CHECK(!cryo::oci::image::is_reference("/plain/dir"));
  CHECK(cryo::oci::image::is_reference("oci-archive:f"));
}
