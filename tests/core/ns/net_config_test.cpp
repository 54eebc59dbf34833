// A hostile image's network namespace is refused before anything is made.
#include <doctest/doctest.h>

#include "core/ns/net/net_config.h"

using namespace cryo;
using namespace cryo::ns::net;

namespace {

image::NetNs with_link(const std::string& name, const std::string& kind, const std::string& peer = "") {
  image::NetNs ns;
  auto* l = ns.add_links();
  l->set_name(name);
  l->set_kind(kind);
  l->set_peer_name(peer);
  return ns;
}

}  // namespace

TEST_CASE("link names and kinds") {
  CHECK(validate_config(with_link("lo", "loopback")).ok());
  CHECK(validate_config(with_link("eth0", "veth", "vethhost")).ok());
  CHECK_FALSE(validate_config(with_link("../x", "veth", "h")).ok());
  CHECK_FALSE(validate_config(with_link("eth0", "veth", "a/b")).ok());
  CHECK_FALSE(validate_config(with_link("eth0", "veth", "")).ok());
  CHECK_FALSE(validate_config(with_link("averyveryverylongname", "dummy")).ok());
  auto unknown = validate_config(with_link("wg0", "wireguard"));
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().message().find("wg0 (wireguard) is not supported") != std::string::npos);
  CHECK_FALSE(validate_config(with_link("eth0", "loopback")).ok());
  auto inside = with_link("a", "veth", "b");
  inside.mutable_links(0)->set_peer_inside(true);
  CHECK_FALSE(validate_config(inside).ok());  // b is not there
  auto* b = inside.add_links();
  b->set_name("b");
  b->set_kind("veth");
  b->set_peer_name("a");
  b->set_peer_inside(true);
  CHECK(validate_config(inside).ok());
  b->set_peer_name("c");
  CHECK_FALSE(validate_config(inside).ok());
  auto twice = with_link("eth0", "dummy");
  *twice.add_links() = twice.links(0);
  CHECK_FALSE(validate_config(twice).ok());
}

TEST_CASE("sysctl names stay under /proc/sys/net") {
  image::NetNs ns;
  ns.add_sysctls()->set_name("ipv4/ip_forward");
  CHECK(validate_config(ns).ok());
  for (const char* bad : {"../../kernel/core_pattern", "/etc/passwd", "ipv4/../../x", "ipv4//x", "", "ipv4/"}) {
    image::NetNs b;
    b.add_sysctls()->set_name(bad);
    CHECK_MESSAGE(!validate_config(b).ok(), bad);
  }
}

TEST_CASE("rules carry only the attributes a rule has") {
  image::NetNs ns;
  auto* r = ns.add_rules();
  r->set_family(2);
  (*r->mutable_attrs())[10] = "x";  // FRA_FWMARK
  CHECK(validate_config(ns).ok());
  (*r->mutable_attrs())[70000] = "x";
  CHECK_FALSE(validate_config(ns).ok());
}

TEST_CASE("--external veth[INNER]:OUTER@BRIDGE") {
  auto p = parse_external_veth("veth[eth0]:vhost@br0");
  REQUIRE(p.ok());
  CHECK(p->first == "eth0");
  CHECK(p->second.name == "vhost");
  CHECK(p->second.bridge == "br0");
  CHECK(parse_external_veth("veth[eth0]:vhost").ok());
  CHECK_FALSE(parse_external_veth("veth[eth0]").ok());
  CHECK_FALSE(parse_external_veth("veth[eth0]:a/b").ok());
  CHECK_FALSE(parse_external_veth("veth[]:x").ok());
}
