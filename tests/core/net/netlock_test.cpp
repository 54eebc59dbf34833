#include "core/net/netlock.h"

#include <doctest/doctest.h>

using namespace cryo;

TEST_CASE("an image can only unlock a network lock cryo made") {
  // Refused before any nft or iptables command runs: the host's own tables and rules.
  for (const char* table : {"filter", "nat", "cryo", "cryo-lock", "cryo-lock-1 ; flush ruleset", "CRYO-LOCK-1"})
    for (const char* method : {"nftables", "iptables"}) CHECK(!net::unlock_connections(table, method).ok());
  CHECK(net::unlock_connections("", "nftables").ok());             // no lock
  CHECK(net::unlock_connections("filter", "skip").ok());           // no method: nothing to do
}
