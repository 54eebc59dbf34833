// Image references as skopeo and Podman spell them: TRANSPORT:DETAILS.
#pragma once

#include <string>

#include "core/sys/result.h"

namespace cryo::oci::image {

enum class Transport {
  kOci,                // oci:DIR[:TAG], an OCI image layout directory
  kOciArchive,         // oci-archive:FILE[:TAG], that layout as a tar file
  kDocker,             // docker://HOST[:PORT]/NAME[:TAG], a registry (through skopeo)
  kContainersStorage,  // containers-storage:NAME, Podman's local store (through skopeo)
};

struct Reference {
  Transport transport = Transport::kOci;
  std::string path;  // DIR or FILE; for docker and containers-storage what follows the transport
  std::string tag;   // oci and oci-archive: the image's ref.name in index.json, empty when not given
  std::string text;  // the reference as written
};

// Whether text names a transport cryo knows (so it is meant as a reference,
// not as a path).
bool is_reference(const std::string& text);
// As containers/image parses them: the path ends at the first ':' (a path
// with a colon cannot be named), the tag is the rest.
Result<Reference> parse_reference(const std::string& text);

}  // namespace cryo::oci::image
