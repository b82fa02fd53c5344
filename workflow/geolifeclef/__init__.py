"""GeoLifeCLEF 2022 species distribution modelling: the logic behind the Snakemake workflow.

Rule scripts under ``workflow/scripts`` are thin adapters over the functions of this
package, so that every step can be imported, tested and run outside Snakemake.
"""
