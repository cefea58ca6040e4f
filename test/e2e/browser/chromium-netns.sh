#!/bin/sh
# Chromium in a network namespace of its own, for the browser tests. Chromium aborts every request
# in flight (ERR_NETWORK_CHANGED, loopback included) whenever an interface of its namespace changes,
# and on a machine where tests start podman networks all the time that is every few seconds. In a
# namespace holding only `lo`, nothing changes: forward.ts relays its 127.0.0.1:PORT to the console
# through a Unix socket (the file system is shared), and Playwright talks to Chromium over a pipe.
# Set by launchChromium (console-browser.ts): STAGELINE_CHROMIUM, STAGELINE_BROWSER_NODE,
# STAGELINE_BROWSER_FORWARDER, STAGELINE_BROWSER_SOCKET, STAGELINE_BROWSER_PORT.
exec unshare --net -- /bin/sh -c '
  ip link set lo up || exit 1
  "$STAGELINE_BROWSER_NODE" "$STAGELINE_BROWSER_FORWARDER" &
  exec "$STAGELINE_CHROMIUM" "$@"
' chromium-netns "$@"
