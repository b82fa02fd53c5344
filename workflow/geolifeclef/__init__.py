"""GeoLifeCLEF species distribution modelling (the 2022 edition, GLC 2024 and 2025 surveys):
the logic behind the Snakemake workflow.

Rule scripts under ``workflow/scripts`` are thin adapters over the functions of this
package, so that every step can be imported, tested and run outside Snakemake.
"""
