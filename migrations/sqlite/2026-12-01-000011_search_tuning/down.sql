-- Search tuning is PostgreSQL's (a function its planner folds into a
-- constant tsquery); FTS5 plans MATCH itself. Kept so both backends have
-- the same migrations.
SELECT 1;
