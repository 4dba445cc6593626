"""Reports of classifications and scans: scores, tables, files, plots and one HTML page.

`summary` scores a scan; `tables` formats results for the terminal (table, JSON, CSV); `writers` writes a
report folder (CSV/Parquet/JSON via polars); `plots` draws the map and heat-map (matplotlib, Agg);
`html` puts it all in one self-contained page. Plotting modules import matplotlib lazily.
"""
