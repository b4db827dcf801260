// The benchmark's worker: the production worker plus the unreplicated baseline object and route.
import worker from "../workers/index.js";
import { app } from "../workers/router.js";
import { addBaselineRoute } from "./baseline.js";

addBaselineRoute(app);

export { DirectoryObject, RegistryObject, ReplicaObject, SequencerObject } from "../workers/index.js";
export { BaselineObject } from "./baseline.js";
export default worker;
