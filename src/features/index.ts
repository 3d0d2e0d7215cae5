/**
 * The composition root: the gateway is this list of features on top of the core. A new capability
 * is a folder under src/features/ with an index.ts exporting its Feature, added here; nothing in
 * the core changes (docs/ARCHITECTURE.md, "How to add a feature").
 */
import type { Feature } from '../core/feature';
import { gpioFeature } from './gpio';
import { kioskFeature } from './kiosk';
import { labelsFeature } from './labels';
import { rfidFeature } from './rfid';
import { scannersFeature } from './scanners';
import { shelvesFeature } from './shelves';
import { technicianFeature } from './technician';

export const BUILTIN_FEATURES: readonly Feature[] = [shelvesFeature, labelsFeature, rfidFeature, scannersFeature, gpioFeature, kioskFeature, technicianFeature];
