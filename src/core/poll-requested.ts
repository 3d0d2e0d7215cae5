/**
 * `pollRequested`: something saw a reason to read a shelf's sensors now rather than at the next
 * poll (a presence beam at the shelf was broken or cleared: items are probably being taken). The
 * GPIO feature emits it; the weight-shelves feature polls that shelf's polled sources at once (rate
 * limited per bus, so a flapping beam cannot hammer an RS-485 line). Declared here, beside the
 * core's events and by declaration merging like a feature's, because a shelf id is the core's
 * (config `shelves`) and neither feature may import the other.
 */
export interface PollRequested {
  /** A shelf id of the config's `shelves`. */
  shelfId: string;
  /** Who asked, for the log and counters, e.g. `gpio:beam-g1`. */
  reason: string;
}

declare module './events' {
  interface GatewayEvents {
    pollRequested: [PollRequested];
  }
}
