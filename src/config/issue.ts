/** One problem found in a config file: an error (the config is refused) or a warning. */
export interface ConfigIssue {
  /** e.g. `shelves[3].slots[1].unit_weight_g`; empty for the whole file. */
  path: string;
  message: string;
}
