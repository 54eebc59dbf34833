#include "oci/image/reference.h"

#include <cerrno>

namespace cryo::oci::image {
namespace {

struct Prefix {
  const char* text;
  Transport transport;
};
constexpr Prefix kPrefixes[] = {
    {"oci:", Transport::kOci},
    {"oci-archive:", Transport::kOciArchive},
    {"docker://", Transport::kDocker},
    {"containers-storage:", Transport::kContainersStorage},
};

// OCI's ref.name grammar, loosely: letters, digits and the separators of
// tags and names; nothing that would be a shell or path surprise elsewhere.
bool valid_tag(const std::string& tag) {
  if (tag.empty() || tag.size() > 255) return false;
  for (char c : tag) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '/' || c == ':' || c == '@' || c == '+';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

bool is_reference(const std::string& text) {
  for (const auto& p : kPrefixes)
    if (text.starts_with(p.text)) return true;
  return false;
}

Result<Reference> parse_reference(const std::string& text) {
  for (const auto& p : kPrefixes) {
    if (!text.starts_with(p.text)) continue;
    Reference ref;
    ref.transport = p.transport;
    ref.text = text;
    std::string rest = text.substr(std::string(p.text).size());
    if (rest.empty()) return Error(EINVAL, "image reference " + text + ": nothing after the transport");
    if (p.transport == Transport::kDocker) {
      size_t slash = rest.find('/');
      if (slash == 0 || slash == std::string::npos || slash + 1 == rest.size())
        return Error(EINVAL, "image reference " + text + ": expected docker://HOST[:PORT]/NAME[:TAG]");
      ref.path = rest;
      return ref;
    }
    if (p.transport == Transport::kContainersStorage) {
      ref.path = rest;
      return ref;
    }
    size_t colon = rest.find(':');
    ref.path = rest.substr(0, colon);
    if (ref.path.empty()) return Error(EINVAL, "image reference " + text + ": no path");
    if (colon != std::string::npos) {
      ref.tag = rest.substr(colon + 1);
      if (!valid_tag(ref.tag)) return Error(EINVAL, "image reference " + text + ": invalid tag \"" + ref.tag + "\"");
    }
    return ref;
  }
  return Error(EINVAL, "image reference " + text +
                           ": unknown transport (oci:DIR[:TAG], oci-archive:FILE[:TAG], docker://HOST/NAME:TAG, "
                           "containers-storage:NAME)");
}

}  // namespace cryo::oci::image
