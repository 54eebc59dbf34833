// Registries and Podman's store through Debian's skopeo: cryo writes and
// reads OCI image layouts itself, and skopeo moves them to and from
// docker:// and containers-storage: references.
#pragma once

#include <optional>
#include <string>

#include "core/sys/result.h"

namespace cryo::oci::image {

// `skopeo copy --quiet FROM TO`; tls_verify, when set, is given for the
// registry side (--src-tls-verify or --dest-tls-verify). A failure carries
// the end of skopeo's own message.
Status skopeo_copy(const std::string& from, const std::string& to, std::optional<bool> src_tls_verify,
                   std::optional<bool> dest_tls_verify);

}  // namespace cryo::oci::image
