// `cryo lazy-pages`: serves the memory of a tree restored with
// `cryo restore --lazy-pages` through the userfaultfds the restore hands
// over (handover.h): a page a process touches first is copied in at once
// (with the pages after it), the rest in the background, then each
// userfaultfd is closed and the daemon exits. Pages come from the image
// directory, every run checked against its checksum before any is served.
//
// Should the daemon die before a process has all its memory, a keeper
// process it forked holds the userfaultfds (so nothing reads as zeros) and
// kills the restored tree: it never runs on with memory it lacks.
//
// A lazy migration's pages come from the source instead (--page-server):
// the daemon connects to `cryo dump --lazy-pages` first, asks it for each
// remote run as it is needed, and says bye once every process has its
// memory, which lets the source's tree go. A source gone before that ends
// the daemon with an error, and the keeper kills the restored tree.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "core/pageserver/channel.h"
#include "core/sys/result.h"

namespace cryo::lazy {

struct DaemonOptions {
  std::string images_dir;
  std::string socket_path;  // where the restore connects
  // --page-server: a lazy migration's source (`cryo dump --lazy-pages`),
  // which serves the image's remote runs from its frozen tree.
  std::optional<pageserver::Endpoint> page_server;
};

// Listens on options.socket_path, calls on_listening, serves one restore and
// returns once every process has its memory (or is gone). An error when the
// restore failed or a page could not be served.
Status run_lazy_pages(const DaemonOptions& options, const std::function<void()>& on_listening);

}  // namespace cryo::lazy
