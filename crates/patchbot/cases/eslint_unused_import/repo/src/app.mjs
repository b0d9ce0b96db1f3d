import { readFile } from "node:fs";
import { join } from "node:path";

export const p = join("a", "b");
