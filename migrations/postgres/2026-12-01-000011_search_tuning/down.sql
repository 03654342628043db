DROP FUNCTION chat_search_query(int8[], text[], bool[]);
