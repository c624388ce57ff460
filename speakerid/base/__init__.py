"""What every layer of speakerid shares and nothing else: the exception tree (rooted in the store's),
checks for the numbers and times callers pass, where files live (home, cache), digests of clips,
prefetching the next clips while this one is embedded, and progress on long work. Imports only
the store's errors and the standard library (plus tqdm)."""
