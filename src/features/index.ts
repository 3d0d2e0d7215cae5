/**
 * The composition root: the gateway is this list of features on top of the core. A new capability
 * is a folder under src/features/ with an index.ts exporting its Feature, added here; nothing in
 * the core changes (docs/ARCHITECTURE.md, "How to add a feature").
 */
import type { Feature } from '../core/feature';
import { kioskFeature } from './kiosk';
import { labelsFeature } from './labels';
import { rfidFeature } from './rfid';
import { shelvesFeature } from './shelves';

export const BUILTIN_FEATURES: readonly Feature[] = [shelvesFeature, labelsFeature, rfidFeature, kioskFeature];
