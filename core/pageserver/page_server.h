// The page server: the far end of `cryo dump --page-server`. pages.img goes
// over the network (TCP, or TLS) straight into the server's image directory;
// the dump keeps its other image files. For a restore, the two halves are
// joined by copying the dump's directory (without pages.img) next to the
// server's pages.img, or that pages.img into the dump's directory.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/image/image.h"
#include "core/pageserver/channel.h"

namespace cryo::pageserver {

struct ServerOptions {
  Endpoint endpoint;
  std::string images_dir;
};

// Listens, calls on_listening with the port, serves one dump (its pages.img
// lands in images_dir once the dump finishes sending it; a stream that breaks
// off or is refused leaves nothing there), and returns.
Status run_page_server(const ServerOptions& options, const std::function<void(int port)>& on_listening);

// The dump's side: a page sink that sends pages.img to the server at `to`.
// Connects and greets at once, so that a server missing fails the dump before
// the tree is frozen.
Result<std::unique_ptr<image::PageSink>> connect_page_sink(const Endpoint& to);

}  // namespace cryo::pageserver
