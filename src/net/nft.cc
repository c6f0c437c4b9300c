#include "net/nft.h"

#include <nftables/libnftables.h>
#include <sched.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace tessera::net {

Result<std::string> RunNft(int netns_fd, const std::string& script) {
  Result<std::string> result = Err("nft: not run");
  std::thread worker([&] {
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) {
      result = Err(Error::FromErrno("setns into the network namespace"));
      return;
    }
    nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (ctx == nullptr) {
      result = Err("nft: cannot make a libnftables context");
      return;
    }
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    int rc = nft_run_cmd_from_buffer(ctx, script.c_str());
    const char* out = nft_ctx_get_output_buffer(ctx);
    const char* err = nft_ctx_get_error_buffer(ctx);
    if (rc != 0) {
      std::string message = err != nullptr && err[0] != '\0' ? err : "failed";
      while (!message.empty() && message.back() == '\n') message.pop_back();
      result = Err("nft: " + message);
    } else {
      result = std::string(out != nullptr ? out : "");
    }
    nft_ctx_free(ctx);
  });
  worker.join();
  return result;
}

}  // namespace tessera::net
