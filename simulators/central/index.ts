/** The reference central inventory service (docs/central-api.yaml). */
export { CentralSimulator, encodeCursor, decodeCursor } from './simulator';
export type { CentralSimulatorOptions, CentralTlsOptions, CentralStats, SimState, SlotInput } from './simulator';
export type { Faults, FaultsPatch } from './faults';
export { NO_FAULTS } from './faults';
export type { PriceInput, ProductInput, NetContent, NetUnit, CsvIssue } from './prices';
export { parsePricesCsv, parseNetContent, demoProduct, RandomPrices, NET_UNITS } from './prices';
export type { ReceivedEvent, StoreStats, OutOfOrderDevice, StoredAck } from './store';
export * from './types';
export { runCentralCli } from './cli';
export { CentralMqttAdapter } from './mqtt-adapter';
export type { CentralMqttAdapterOptions } from './mqtt-adapter';
export type { IngestOutcome } from './simulator';
