#include "net/nft.h"

#include <nftables/libnftables.h>

#include "net/netns.h"

namespace tessera::net {

Result<std::string> RunNft(int netns_fd, const std::string& script) {
  // The context's netlink socket, and the interface names it looks up, are
  // of the namespace the thread is in while it runs.
  NetnsVisit in = TRY(NetnsVisit::Enter(netns_fd));
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) return Err("nft: cannot make a libnftables context");
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  int rc = nft_run_cmd_from_buffer(ctx, script.c_str());
  const char* out = nft_ctx_get_output_buffer(ctx);
  const char* err = nft_ctx_get_error_buffer(ctx);
  Result<std::string> result = Err("nft: not run");
  if (rc != 0) {
    std::string message = err != nullptr && err[0] != '\0' ? err : "failed";
    while (!message.empty() && message.back() == '\n') message.pop_back();
    result = Err("nft: " + message);
  } else {
    result = std::string(out != nullptr ? out : "");
  }
  nft_ctx_free(ctx);
  return result;
}

}  // namespace tessera::net
