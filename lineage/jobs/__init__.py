"""Jobs over many models, the library under the CLI: scans, classify/distance over paths, verify, evaluations
and calibration. A job opens references (`lineage.refs`), obtains fingerprints (`lineage.fingerprint`),
classifies (`lineage.decide`) and returns rows and summaries that `lineage.report` renders."""
