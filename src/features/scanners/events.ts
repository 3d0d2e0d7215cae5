/**
 * The in-process event a barcode scanner's read becomes (the scanners feature emits it; the kiosk
 * lookup feature answers it on the bound kiosk's topic and page). Only valid reads are emitted: a
 * misread (bad check digit, unparsable GS1 string) is counted by the scanners feature and never
 * looked up.
 */
export interface BarcodeScanned {
  /** Configured scanner id. */
  scannerId: string;
  /** The kiosk the scanner is bound to (`scanners[].kiosk`), or null for an unbound scanner. */
  kioskId: string | null;
  /** What the scanner sent, without terminator and AIM prefix. */
  raw: string;
  /** From the AIM symbology identifier (`]E0` EAN-13/UPC-A, `]E4` EAN-8, `]E3` EAN-13+add-on, `]C1` GS1-128, `]d2` GS1 DataMatrix), or null. */
  symbology: string | null;
  /** GTIN-14 (check digit verified), or null when the code carries no GTIN. */
  gtin: string | null;
  /** GS1 application identifiers found: (10) batch, (17) expiry as YYMMDD, (21) serial. */
  batch?: string;
  expiry?: string;
  serial?: string;
  /** ms epoch of the read. */
  ts: number;
}

declare module '../../core/events' {
  interface GatewayEvents {
    barcodeScanned: [BarcodeScanned];
  }
}
